// @pack427/client: the framework-free core. React hooks: @pack427/client/react.
export {
  createClient,
  Pack427Client,
  DEFAULT_RETRY,
  TYPING_IDLE_MS,
  TYPING_THROTTLE_MS,
  type AppClientOptions,
  type ChatMessage,
  type ChatUnread,
  type ChatView,
  type ClientOptions,
  type ClientSnapshot,
  type MessageState,
  type OutboxMessage,
  type RetryPolicy,
  type StoredMessage,
  type TypingUserState,
} from "./client.js";
export { firebaseInvoker, toClientError, typedCall, type Call, type Invoker } from "./callables.js";
export {
  alwaysOnline,
  browserConnectivity,
  manualConnectivity,
  netInfoConnectivity,
  type Connectivity,
  type NetInfoLike,
  type NetInfoStateLike,
} from "./connectivity.js";
export { classify, NoAnswerError, Pack427Error, type ErrorCode, type Failure } from "./errors.js";
export { indexedDbStorage, memoryStorage, webStorage, type StorageAdapter } from "./storage.js";
export { ulid } from "./ulid.js";
export * from "./generated/api.js";
