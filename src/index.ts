/**
 * `roomwire`: the framework-agnostic core. Create a hub with {@link createHub}, read its
 * configuration with {@link configFromEnv}, and attach it with an adapter
 * (`roomwire/node`). One process by default; `roomwire/redis` spreads a hub over several.
 * Adapter authors reach the admission API through {@link adapterHandle}; broker authors
 * implement {@link Broker} and are handed a {@link BrokerHost}.
 *
 * @packageDocumentation
 * @module roomwire
 */
export { createHub } from './core/hub';
export type { CloseOptions, DurationHistogram, HistoryFor, HistoryStatsSnapshot, Hub, HubEvents, HubOptions, HubStats, MessageEvent, PublishOptions } from './core/api';
export { adapterHandle } from './core/adapter';
export type { AdapterHandle } from './core/adapter';
export type { Admission, Ticket } from './core/admission';
export {
  configFromEnv,
  unknownVariables,
  parseDuration,
  parseRate,
  formatRate,
  CONFIG_FIELDS,
  HMAC_ALGORITHMS,
  ASYMMETRIC_ALGORITHMS,
} from './core/config';
export type { ConfigField, ConfigFromEnvOptions, Duration, DurationKey, HubConfig, HubConfigInput, JwtConfig, JwtInput, RateLimit, UnknownVariable } from './core/config';
export { RoomwireError, TOKEN_PROBLEMS, WIRE_ERRORS } from './core/errors';
export type { ApplicationErrorCode, ClientErrorCode, ConfigIssue, ErrorCode, TokenProblem, WireErrorCode } from './core/errors';
export {
  ClientMessageSchemas,
  CLIENT_MESSAGE_TYPES,
  ROOM_NAME_PATTERN,
  RoomNameSchema,
  RequestIdSchema,
  SinceSchema,
  ServerFrameSchemas,
  Outbound,
  checkFrame,
  isValidRoomName,
} from './core/protocol';
export type { AckStream, ClientMessage, ClientMessageType, FrameCheck, MessageParts, RequestId, ServerFrame, ServerFrameType, Since } from './core/protocol';
export { frameJsonSchemas, protocolJsonSchema } from './core/json-schema';
export type { JsonSchema } from './core/json-schema';
export { createJwtVerifier, defaultAuthenticate, extractToken, identityFromClaims } from './core/auth';
export type { JwtVerifier } from './core/auth';
export { createMemoryBroker } from './core/memory-broker';
export { systemClock } from './core/clock';
export type { Route } from './core/routes';
export { DURATION_BUCKETS, REJECT_REASONS } from './core/stats';
export type { RejectReason } from './core/stats';
export type { TerminationReason } from './core/heartbeat';
export type {
  AuthContext,
  Authenticate,
  AuthorizationHooks,
  Broker,
  BrokerHealth,
  BrokerHistory,
  BrokerHost,
  BrokerSeats,
  Client,
  Clock,
  Decision,
  HistoryPolicy,
  HistoryRead,
  HistoryStats,
  Identity,
  Logger,
  Member,
  PresenceEntry,
  SeatKey,
  StreamPosition,
  Transport,
  TransportListener,
  UpgradeRequest,
} from './core/types';
