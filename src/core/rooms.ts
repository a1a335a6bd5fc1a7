/**
 * Room membership: who is in a room, by connection for delivery and by user for
 * `user_list` (each user once, however many connections it has there).
 */

/** What a room needs to know about a member. */
export interface Member {
  readonly userId: string;
  readonly username: string;
}

interface UserEntry {
  readonly username: string;
  count: number;
}

/** One room of this process. */
export class Room<M extends Member = Member> {
  /** Connections in the room, in join order. */
  readonly members = new Set<M>();
  private readonly users = new Map<string, UserEntry>();

  constructor(
    /** The room name. */
    readonly name: string,
  ) {}

  /** Add a member; returns false when it was already in. */
  add(member: M): boolean {
    if (this.members.has(member)) return false;
    this.members.add(member);
    const u = this.users.get(member.userId);
    if (u === undefined) this.users.set(member.userId, { username: member.username, count: 1 });
    else u.count++;
    return true;
  }

  /** Remove a member; returns false when it was not in. */
  remove(member: M): boolean {
    if (!this.members.delete(member)) return false;
    const u = this.users.get(member.userId);
    if (u !== undefined && --u.count === 0) this.users.delete(member.userId);
    return true;
  }

  /** Usernames of the room's users, each user once, in the order they first joined. */
  usernames(): string[] {
    const out: string[] = [];
    for (const u of this.users.values()) out.push(u.username);
    return out;
  }

  /** Number of member connections. */
  get size(): number {
    return this.members.size;
  }
}

/** The rooms of one process; empty rooms are removed. */
export class RoomRegistry<M extends Member = Member> {
  private readonly rooms = new Map<string, Room<M>>();

  /** The room called `name`, if it has members. */
  get(name: string): Room<M> | undefined {
    return this.rooms.get(name);
  }

  /** Add `member` to `name`, creating the room. Returns the room. */
  join(name: string, member: M): Room<M> {
    let room = this.rooms.get(name);
    if (room === undefined) {
      room = new Room<M>(name);
      this.rooms.set(name, room);
    }
    room.add(member);
    return room;
  }

  /** Remove `member` from `name`, dropping the room once empty. */
  leave(name: string, member: M): void {
    const room = this.rooms.get(name);
    if (room === undefined) return;
    room.remove(member);
    if (room.size === 0) this.rooms.delete(name);
  }

  /** Names of rooms with members. */
  names(): string[] {
    return [...this.rooms.keys()];
  }

  /** All rooms with members. */
  values(): IterableIterator<Room<M>> {
    return this.rooms.values();
  }

  /** Number of rooms with members. */
  get size(): number {
    return this.rooms.size;
  }
}
