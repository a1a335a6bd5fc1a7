/**
 * Error codes and the one error class roomwire throws and emits.
 *
 * Wire codes are the `data.code` values of the protocol's `error` frames; `ERR_*`
 * codes are raised to the application (configuration, broker, transport).
 */

/**
 * Every `error` frame code of the wire protocol (docs/protocol.md section 3), with the text sent
 * in the frame's `content` field. This table is the single source of
 * {@link WireErrorCode}.
 */
export const WIRE_ERRORS = {
  rate_limited: 'too many messages: this one was dropped',
  invalid_json: 'message is not a JSON object',
  invalid_message: 'message has missing or wrongly typed fields',
  unsupported_type: 'message type is missing or not supported',
  invalid_room: 'room names are 1 to 64 characters from A-Z a-z 0-9 _ - . :',
  not_in_room: 'not a member of this room',
  too_many_rooms: 'too many rooms joined on this connection',
  room_full: 'room is full',
  forbidden: 'not allowed',
  unauthorized: 'token is not valid',
  unavailable: "the room's history cannot be reached now: the message was not sent",
} as const;

/** A code carried in `data.code` of an `error` frame. */
export type WireErrorCode = keyof typeof WIRE_ERRORS;

/** Codes raised to the application rather than sent to a client. */
export type ApplicationErrorCode =
  /** A configuration value (environment variable or option) is invalid. */
  | 'ERR_INVALID_CONFIG'
  /** A function was called with an argument it cannot use (a close code, a room name). */
  | 'ERR_INVALID_ARGUMENT'
  /** An application hook (canJoin, canPublish) or event listener threw, or handling a message failed. */
  | 'ERR_HOOK'
  /** A broker failed to publish or answer. */
  | 'ERR_BROKER'
  /** A transport failed to send, close or ping. */
  | 'ERR_TRANSPORT';

/** Codes the client SDK (`roomwire/client`) rejects its calls with, beside the wire codes. */
export type ClientErrorCode =
  /** The call got no answer within `requestTimeoutMs` (also while disconnected). */
  | 'ERR_TIMEOUT'
  /** `client.close()` was called. */
  | 'ERR_CLOSED'
  /** The connection dropped after the request was sent; whether the server handled it is unknown. */
  | 'ERR_CONNECTION_LOST'
  /** The server refused the connection in a way retrying cannot fix (401 without a new token, 403, 404). */
  | 'ERR_REFUSED'
  /** Too many calls are waiting for the connection. */
  | 'ERR_QUEUE_FULL';

/** Every code a {@link RoomwireError} can carry. */
export type ErrorCode = WireErrorCode | ApplicationErrorCode | ClientErrorCode;

/** One invalid configuration entry, as listed by an `ERR_INVALID_CONFIG` error. */
export interface ConfigIssue {
  /** The environment variable (for {@link configFromEnv}) or option path (for {@link createHub}). */
  readonly name: string;
  /** Why the value was refused. */
  readonly message: string;
}

/**
 * The single error class of roomwire. Switch on {@link RoomwireError.code}, a stable
 * string, rather than on `instanceof` (which breaks when two copies of the package
 * are installed).
 *
 * @example
 * ```ts
 * try {
 *   createHub(configFromEnv());
 * } catch (err) {
 *   if ((err as RoomwireError).code === 'ERR_INVALID_CONFIG') process.exit(2);
 *   throw err;
 * }
 * ```
 */
export class RoomwireError extends Error {
  /** Stable machine-readable code. */
  readonly code: ErrorCode;
  /** For `ERR_INVALID_CONFIG`: every bad entry, in a stable order. */
  readonly issues: readonly ConfigIssue[];
  /** For `ERR_REFUSED` (client): the HTTP status of the refused upgrade. */
  readonly status: number | undefined;
  /**
   * For `unauthorized`: what is wrong with the token, one of {@link TOKEN_PROBLEMS}'s keys
   * (`expired`, `bad signature`, ...). It never holds the token.
   */
  readonly detail: string | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; issues?: readonly ConfigIssue[]; status?: number; detail?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RoomwireError';
    this.code = code;
    this.issues = options?.issues ?? [];
    this.status = options?.status;
    this.detail = options?.detail;
  }
}

/**
 * Why a token was refused, with the sentence a 401 answer and the log line give for it.
 * The 401 body and the `info` log line of a refused upgrade name one of these.
 */
export const TOKEN_PROBLEMS = {
  missing: 'no token was given (an Authorization: Bearer header, a ?token= parameter or a token cookie)',
  malformed: 'the token is not a well-formed JWT',
  'bad signature': "the token's signature does not verify with the configured key",
  'wrong algorithm': "the token's algorithm is not accepted (WEBSOCKET_JWT_ALGORITHMS)",
  expired: 'the token has expired',
  'not yet valid': 'the token is not valid yet (nbf)',
  issuer: "the token's issuer (iss) is not accepted (WEBSOCKET_JWT_ISSUER)",
  audience: "the token's audience (aud) is not accepted (WEBSOCKET_JWT_AUDIENCE)",
  'no sub': 'the token has no sub claim',
  'no key configured': 'the server has no key to verify tokens (set WEBSOCKET_JWT_SECRET, WEBSOCKET_JWT_PUBLIC_KEY or WEBSOCKET_JWKS_URL)',
  'key set unavailable': 'the key set (WEBSOCKET_JWKS_URL) could not be fetched',
  refused: 'the application refused the token',
} as const;

/** A key of {@link TOKEN_PROBLEMS}. */
export type TokenProblem = keyof typeof TOKEN_PROBLEMS;

/** Build the `ERR_INVALID_CONFIG` error that lists every issue, one per line. */
export function configError(issues: readonly ConfigIssue[]): RoomwireError {
  const lines = issues.map((i) => `  ${i.name}: ${i.message}`).join('\n');
  return new RoomwireError('ERR_INVALID_CONFIG', `invalid configuration:\n${lines}`, { issues });
}
