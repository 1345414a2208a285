// The one WebSocket of this tab (/api/ws): connects, reconnects with a
// capped, jittered backoff, follows the browser's online/offline state, and
// hands every parsed server message to its owner.

import type { ClientMessage, ServerMessage } from "./types";

/** ConnectionState is what the banner's "Connection" status shows. */
export type ConnectionState = "connected" | "reconnecting" | "offline";

export interface SocketHandlers {
  /** message receives every server message; "hello" marks the connection usable. */
  message(msg: ServerMessage): void;
  /** state is called whenever the connection state changes. */
  state(state: ConnectionState): void;
  /** dropped is called when a socket closes; greeted says whether it ever got "hello". */
  dropped(greeted: boolean): void;
}

const BACKOFF_START_MS = 200;
const BACKOFF_CAP_MS = 2000;

function socketURL(): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/api/ws`;
}

function isServerMessage(v: unknown): v is ServerMessage {
  return typeof v === "object" && v !== null && typeof (v as { type?: unknown }).type === "string";
}

export class Socket {
  private ws: WebSocket | null = null;
  private greeted = false;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private stopped = true;
  private current: ConnectionState = "reconnecting";
  private readonly handlers: SocketHandlers;
  private readonly onOnline = () => {
    this.attempt = 0;
    this.connectSoon(0);
  };
  private readonly onOffline = () => {
    // Drop the socket ourselves: the browser may keep a dead one open for a
    // long time, and edits should visibly wait as pending meanwhile.
    this.setState("offline");
    this.closeSocket();
    this.connectSoon(BACKOFF_CAP_MS);
  };

  constructor(handlers: SocketHandlers) {
    this.handlers = handlers;
  }

  /** state is the current connection state. */
  get state(): ConnectionState {
    return this.current;
  }

  /** open is true while the socket is connected and the server said hello. */
  open(): boolean {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN && this.greeted;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
    this.connectSoon(0);
  }

  stop(): void {
    this.stopped = true;
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOffline);
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.closeSocket();
  }

  /** send writes one frame; false when no greeted socket is open (the caller keeps it for later). */
  send(msg: ClientMessage): boolean {
    if (!this.open() || !this.ws) return false;
    try {
      this.ws.send(JSON.stringify(msg));
      return true;
    } catch {
      return false;
    }
  }

  private setState(s: ConnectionState): void {
    if (this.current === s) return;
    this.current = s;
    this.handlers.state(s);
  }

  private offlineNow(): boolean {
    return typeof navigator !== "undefined" && navigator.onLine === false;
  }

  private connectSoon(delay: number): void {
    if (this.stopped) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delay);
  }

  private connect(): void {
    if (this.stopped || this.ws) return;
    if (this.offlineNow()) {
      this.setState("offline");
      // Keep trying slowly too: navigator.onLine is only a hint.
      this.connectSoon(BACKOFF_CAP_MS * 2);
      return;
    }
    this.setState("reconnecting");
    let ws: WebSocket;
    try {
      ws = new WebSocket(socketURL());
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.greeted = false;
    ws.onmessage = (ev: MessageEvent) => {
      if (this.ws !== ws || typeof ev.data !== "string") return;
      let msg: unknown;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (!isServerMessage(msg)) return;
      if (msg.type === "hello") {
        this.greeted = true;
        this.attempt = 0;
        this.setState("connected");
      }
      this.handlers.message(msg);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      const greeted = this.greeted;
      this.ws = null;
      this.greeted = false;
      this.setState(this.offlineNow() ? "offline" : "reconnecting");
      this.handlers.dropped(greeted);
      this.scheduleReconnect();
    };
    // An error is always followed by close, which does the work.
    ws.onerror = () => {};
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    const base = Math.min(BACKOFF_CAP_MS, BACKOFF_START_MS * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 10);
    // Full jitter in the upper half, so a restarted server is not hit by
    // every tab at once, yet nobody waits much longer than the cap.
    const delay = base / 2 + Math.random() * (base / 2);
    this.connectSoon(delay);
  }

  private closeSocket(): void {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    const greeted = this.greeted;
    this.greeted = false;
    ws.onmessage = null;
    ws.onclose = null;
    try {
      ws.close(1000, "bye");
    } catch {
      // Already closing.
    }
    this.handlers.dropped(greeted);
  }
}
