// @pack427/client/react: the seed's hooks, thin over the core's store.
import type { FirebaseApp } from "firebase/app";
import {
  createContext,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useRef,
  useState,
  useSyncExternalStore,
  type ReactNode,
} from "react";
import {
  createClient,
  type AppClientOptions,
  type ChatMessage,
  type OutboxMessage,
  type Pack427Client,
  type StoredMessage,
  type TypingUserState,
} from "../client.js";

export type ProviderOptions = Omit<AppClientOptions, "userId">;

/**
 * One client per user, shared by every hook of that user. A client is started by its
 * first hook and disposed a tick after its last one goes, so React StrictMode's
 * unmount-and-mount-again keeps the same client: no second listener, no second send.
 */
export class ClientRegistry {
  private readonly clients = new Map<string, { client: Pack427Client; holders: number; timer: ReturnType<typeof setTimeout> | null }>();
  constructor(
    private readonly app: FirebaseApp,
    private options: ProviderOptions,
  ) {}

  get(userId: string): Pack427Client {
    let entry = this.clients.get(userId);
    if (!entry || entry.client.isDisposed) {
      entry = { client: createClient(this.app, { ...this.options, userId }), holders: 0, timer: null };
      this.clients.set(userId, entry);
    }
    return entry.client;
  }

  /** Hold the user's client (starting it); returns the release. */
  retain(userId: string): () => void {
    const client = this.get(userId);
    const entry = this.clients.get(userId);
    if (!entry) throw new Error("unreachable");
    entry.holders += 1;
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = null;
    void client.start();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      entry.holders -= 1;
      if (entry.holders === 0) {
        entry.timer = setTimeout(() => {
          if (entry.holders === 0 && this.clients.get(userId) === entry) {
            this.clients.delete(userId);
            entry.client.dispose();
          }
        }, 0);
      }
    };
  }

  disposeAll(): void {
    for (const entry of this.clients.values()) {
      if (entry.timer) clearTimeout(entry.timer);
      entry.client.dispose();
    }
    this.clients.clear();
  }
}

const RegistryContext = createContext<ClientRegistry | null>(null);

export interface Pack427ProviderProps extends ProviderOptions {
  /** The Firebase app, its user signed in (Auth); its Firestore and Functions are used. */
  readonly app: FirebaseApp;
  readonly children?: ReactNode;
}

export function Pack427Provider({ app, children, ...options }: Pack427ProviderProps): ReactNode {
  // Read once: a provider keeps its clients (and their storage) for its whole life.
  const [registry] = useState(() => new ClientRegistry(app, options));
  const disposeTimer = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(() => {
    // Mounted again at once (StrictMode): the clients stay.
    if (disposeTimer.current) clearTimeout(disposeTimer.current);
    disposeTimer.current = null;
    return () => {
      disposeTimer.current = setTimeout(() => registry.disposeAll(), 0);
    };
  }, [registry]);
  return <RegistryContext.Provider value={registry}>{children}</RegistryContext.Provider>;
}

/** The signed-in user's client, held while the component is mounted. */
export function usePack427Client(userId: string): Pack427Client {
  const registry = useContext(RegistryContext);
  if (!registry) throw new Error("@pack427/client/react: wrap the app in <Pack427Provider>");
  const client = registry.get(userId);
  useEffect(() => registry.retain(userId), [registry, userId, client]);
  return client;
}

function useLatest<T>(value: T): { readonly current: T } {
  const ref = useRef(value);
  ref.current = value;
  return ref;
}

export interface UseOfflineAwareChatOptions {
  readonly chatId: string;
  readonly userId: string;
  /** Each batch of messages of this chat new to the device, once stored. */
  readonly onMessagesReceived?: (messages: readonly StoredMessage[]) => void;
  /** After each sync reached the end of the inbox. */
  readonly onSyncComplete?: () => void;
}

export interface OfflineAwareChat {
  readonly isOnline: boolean;
  readonly isSyncing: boolean;
  /** Written, not accepted yet, oldest first. */
  readonly queuedMessages: readonly OutboxMessage[];
  /** The chat's messages, oldest first, each with its state; queued and failed ones last. */
  readonly messages: readonly ChatMessage[];
  /** Store the message in the outbox (resolves once stored); it is sent when online. */
  readonly sendMessage: (text: string, options?: { contentRef?: string }) => Promise<OutboxMessage>;
  /** Fetch everything delivered since the stored cursor (also done on start and every reconnect). */
  readonly syncMessages: () => Promise<readonly StoredMessage[]>;
  /** The chat's whole record from the engine (a device that lost its store), and its receipts. */
  readonly refreshChat: () => Promise<readonly StoredMessage[]>;
  /** Send the chat's failed messages again, with their clientMessageIds; resolves with how many. */
  readonly retryFailedMessages: () => Promise<number>;
  readonly hasPendingMessages: boolean;
  readonly failedMessagesCount: number;
}

export function useOfflineAwareChat({ chatId, userId, onMessagesReceived, onSyncComplete }: UseOfflineAwareChatOptions): OfflineAwareChat {
  const client = usePack427Client(userId);
  const view = useSyncExternalStore(client.subscribe, () => client.chatView(chatId), () => client.chatView(chatId));
  const received = useLatest(onMessagesReceived);
  const synced = useLatest(onSyncComplete);
  useEffect(() => client.watchReceipts(chatId), [client, chatId]);
  useEffect(() => client.onMessagesReceived((messages) => {
    const mine = messages.filter((m) => m.chatId === chatId);
    if (mine.length) received.current?.(mine);
  }), [client, chatId, received]);
  useEffect(() => client.onSyncComplete(() => synced.current?.()), [client, synced]);
  const sendMessage = useCallback((text: string, options?: { contentRef?: string }) => client.send(chatId, text, options), [client, chatId]);
  const syncMessages = useCallback(() => client.syncMessages(), [client]);
  const refreshChat = useCallback(() => client.refreshChat(chatId), [client, chatId]);
  const retryFailedMessages = useCallback(() => client.retryFailed(chatId), [client, chatId]);
  return useMemo(() => ({
    isOnline: view.isOnline,
    isSyncing: view.isSyncing,
    queuedMessages: view.queuedMessages,
    messages: view.messages,
    sendMessage,
    syncMessages,
    refreshChat,
    retryFailedMessages,
    hasPendingMessages: view.queuedMessages.length > 0,
    failedMessagesCount: view.failedMessagesCount,
  }), [view, sendMessage, syncMessages, refreshChat, retryFailedMessages]);
}

export interface UseRealtimeSignalsOptions {
  /** The chat whose typing indicators to show and to send; unread counts are for every chat. */
  readonly chatId?: string;
  readonly userId: string;
  /** false: no listener, no calls (default true). */
  readonly enabled?: boolean;
}

export interface RealtimeSignals {
  /** The other participants typing now; each goes at its expiresAt. */
  readonly typingUsers: readonly TypingUserState[];
  readonly isAnyoneTyping: boolean;
  /** "Bea is typing", "Bea and Cy are typing", "3 people are typing", or "". */
  readonly typingText: string;
  /** Call on each keystroke: at most one call per 3 s; stops by itself after 5 s without one. */
  readonly startTyping: () => void;
  readonly stopTyping: () => void;
  readonly unreadCounts: Readonly<Record<string, number>>;
  readonly totalUnread: number;
  readonly getUnreadCount: (chatId: string) => number;
  /** Everything up to messageId is read (the hook's chat unless chatId is given). */
  readonly markAsRead: (messageId: string, chatId?: string) => Promise<number>;
  /** The whole chat is read (the hook's chat unless chatId is given). */
  readonly markChatAsRead: (chatId?: string) => Promise<number>;
  readonly refreshUnreadCounts: () => Promise<Readonly<Record<string, number>>>;
}

const NO_TYPING: readonly TypingUserState[] = [];

export function typingText(users: readonly TypingUserState[]): string {
  const [first, second] = users;
  if (!first) return "";
  if (!second) return `${first.name} is typing`;
  if (users.length === 2) return `${first.name} and ${second.name} are typing`;
  return `${users.length} people are typing`;
}

export function useRealtimeSignals({ chatId, userId, enabled = true }: UseRealtimeSignalsOptions): RealtimeSignals {
  const client = usePack427Client(userId);
  const snapshot = useSyncExternalStore(client.subscribe, client.getSnapshot, client.getSnapshot);
  useEffect(() => {
    if (!enabled || chatId === undefined) return undefined;
    const release = client.watchTyping(chatId);
    return () => {
      release();
      client.stopTyping(chatId);
    };
  }, [client, chatId, enabled]);
  const typingUsers = (enabled && chatId !== undefined ? snapshot.typing[chatId] : undefined) ?? NO_TYPING;
  const unread = snapshot.unread;
  const unreadCounts = useMemo(() => {
    const counts: Record<string, number> = {};
    for (const [id, c] of Object.entries(unread)) if (c.unread > 0) counts[id] = c.unread;
    return counts;
  }, [unread]);
  const startTyping = useCallback(() => {
    if (enabled && chatId !== undefined) client.startTyping(chatId);
  }, [client, chatId, enabled]);
  const stopTyping = useCallback(() => {
    if (chatId !== undefined) client.stopTyping(chatId);
  }, [client, chatId]);
  const markAsRead = useCallback((messageId: string, other?: string) => {
    const target = other ?? chatId;
    if (target === undefined) return Promise.reject(new Error("markAsRead: no chatId"));
    return client.markAsRead(target, messageId);
  }, [client, chatId]);
  const markChatAsRead = useCallback((other?: string) => {
    const target = other ?? chatId;
    if (target === undefined) return Promise.reject(new Error("markChatAsRead: no chatId"));
    return client.markChatAsRead(target);
  }, [client, chatId]);
  const refreshUnreadCounts = useCallback(() => client.refreshUnreadCounts(), [client]);
  const getUnreadCount = useCallback((id: string) => unreadCounts[id] ?? 0, [unreadCounts]);
  return useMemo(() => ({
    typingUsers,
    isAnyoneTyping: typingUsers.length > 0,
    typingText: typingText(typingUsers),
    startTyping,
    stopTyping,
    unreadCounts,
    totalUnread: snapshot.totalUnread,
    getUnreadCount,
    markAsRead,
    markChatAsRead,
    refreshUnreadCounts,
  }), [typingUsers, startTyping, stopTyping, unreadCounts, snapshot.totalUnread, getUnreadCount, markAsRead, markChatAsRead, refreshUnreadCounts]);
}

export type { ChatMessage, OutboxMessage, StoredMessage, TypingUserState } from "../client.js";
