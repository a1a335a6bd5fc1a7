// The seed's client example, verbatim (../shared/spec/seed-websocket-integration.md).
// Connect to WebSocket
const ws = new WebSocket('ws://localhost:8080/ws/room1');

// Send authentication token (if required)
ws.onopen = function() {
    // Send join message
    ws.send(JSON.stringify({
        type: 'join',
        room: 'room1'
    }));
};

// Handle incoming messages
ws.onmessage = function(event) {
    const message = JSON.parse(event.data);
    
    switch(message.type) {
        case 'message':
            console.log(`${message.username}: ${message.content}`);
            break;
        case 'user_list':
            console.log('Users in room:', message.data);
            break;
        case 'join':
            console.log(`${message.username} joined the room`);
            break;
        case 'leave':
            console.log(`${message.username} left the room`);
            break;
    }
};

// Send a message
function sendMessage(content) {
    ws.send(JSON.stringify({
        type: 'message',
        room: 'room1',
        content: content
    }));
}

// Handle connection close
ws.onclose = function() {
    console.log('WebSocket connection closed');
};

// Handle errors
ws.onerror = function(error) {
    console.error('WebSocket error:', error);
};
