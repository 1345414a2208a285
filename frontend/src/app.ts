// App is the signed-in application's state and actions: the team, the
// catalog, the drafts list, the open draft's session, the submissions and
// the socket that keeps them live. Views read it and call its actions; it
// calls back `changed` whenever something on screen may need patching.

import { api, ApiError, errorMessage, operationFrom } from "./api";
import { latestForDraft, mergeOperation, refreshOperation } from "./operations";
import { DraftSession } from "./draft/session";
import { clearAllPending, draftsWithPending } from "./draft/pending-store";
import type { Money } from "./draft/ops";
import { Socket, type ConnectionState } from "./socket";
import type { Draft, DraftSummary, Me, Operation, Product, ServerMessage } from "./types";

/** DEFAULT_DRAFT_TITLE names a new draft until someone renames it. */
export const DEFAULT_DRAFT_TITLE = "Untitled order";

const DRAFTS_REFRESH_MS = 15000;
const DRAFTS_DEBOUNCE_MS = 300;

/** SubmitState is the open draft's submit button and the line beside it. */
export interface SubmitState {
  busy: boolean;
  /** phase says what a busy submit waits for. */
  phase: "saving" | "sending" | null;
  message: string | null;
  tone: "error" | "info";
}

/** RetryState is one operation's Retry button and its error. */
export interface RetryState {
  busy: boolean;
  error: string | null;
}

/** Notice is a transient message for the whole page. */
export interface Notice {
  id: number;
  text: string;
}

function draftPath(id: string | null): string {
  return id ? `/drafts/${encodeURIComponent(id)}` : "/";
}

/** draftIdFromPath reads the open draft from a location path. */
export function draftIdFromPath(path: string): string | null {
  const m = /^\/drafts\/([^/]+)\/?$/.exec(path);
  if (!m || !m[1]) return null;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return null;
  }
}

export class App {
  me: Me;
  catalog: Product[] = [];
  catalogLoaded = false;
  catalogError: string | null = null;
  drafts: DraftSummary[] = [];
  draftsLoaded = false;
  draftsError: string | null = null;
  creatingDraft = false;
  createDraftError: string | null = null;
  openDraftId: string | null = null;
  readonly sessions = new Map<string, DraftSession>();
  readonly operations = new Map<string, Operation>();
  operationsLoaded = false;
  operationsError: string | null = null;
  connection: ConnectionState = "reconnecting";
  readonly submits = new Map<string, SubmitState>();
  readonly retries = new Map<string, RetryState>();
  notices: Notice[] = [];

  private readonly socket: Socket;
  private readonly products = new Map<string, Product>();
  private readonly onChanged: () => void;
  private readonly onSignedOut: () => void;
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;
  private refreshInterval: ReturnType<typeof setInterval> | null = null;
  private resubscribeTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private lastOperationKey = new Map<string, string>();
  private lastProbe = 0;
  private noticeSeq = 0;
  private stopped = false;
  private waiters: Array<() => boolean> = [];

  constructor(me: Me, onChanged: () => void, onSignedOut: () => void) {
    this.me = me;
    this.onChanged = onChanged;
    this.onSignedOut = onSignedOut;
    this.socket = new Socket({
      message: (m) => this.onMessage(m),
      state: (s) => {
        this.connection = s;
        this.changed();
      },
      dropped: (greeted) => this.onDropped(greeted),
    });
  }

  // ---- lifecycle -------------------------------------------------------

  start(): void {
    this.socket.start();
    void this.loadCatalog();
    void this.refreshDrafts();
    this.refreshInterval = setInterval(() => {
      if (document.visibilityState === "visible" && navigator.onLine !== false) void this.refreshDrafts();
    }, DRAFTS_REFRESH_MS);
    window.addEventListener("popstate", this.onPopState);
    window.addEventListener("pagehide", this.onPageHide);
    document.addEventListener("visibilitychange", this.onVisibility);
    this.openDraft(draftIdFromPath(location.pathname), "none");
  }

  stop(): void {
    this.stopped = true;
    this.socket.stop();
    if (this.refreshTimer !== null) clearTimeout(this.refreshTimer);
    if (this.refreshInterval !== null) clearInterval(this.refreshInterval);
    for (const t of this.resubscribeTimers.values()) clearTimeout(t);
    for (const s of this.sessions.values()) s.dispose();
    this.sessions.clear();
    window.removeEventListener("popstate", this.onPopState);
    window.removeEventListener("pagehide", this.onPageHide);
    document.removeEventListener("visibilitychange", this.onVisibility);
  }

  private readonly onPopState = () => {
    this.openDraft(draftIdFromPath(location.pathname), "none");
  };

  private readonly onPageHide = () => {
    for (const s of this.sessions.values()) s.flushNow();
  };

  private readonly onVisibility = () => {
    if (document.visibilityState === "visible") void this.refreshDrafts();
  };

  /** changed schedules a render and wakes whatever waits on the state. */
  changed(): void {
    if (this.waiters.length > 0) this.waiters = this.waiters.filter((w) => !w());
    this.onChanged();
  }

  // ---- catalog ---------------------------------------------------------

  private async loadCatalog(): Promise<void> {
    try {
      const { products } = await api.catalog();
      this.catalog = Array.isArray(products) ? products : [];
      this.products.clear();
      for (const p of this.catalog) this.products.set(p.sku, p);
      this.catalogLoaded = true;
      this.catalogError = null;
    } catch (e) {
      this.catalogError = errorMessage(e);
      setTimeout(() => void this.loadCatalog(), 3000);
    }
    this.changed();
  }

  /** product is the catalog entry of a sku. */
  product(sku: string): Product | undefined {
    return this.products.get(sku);
  }

  readonly nameOf = (sku: string): string => this.products.get(sku)?.name ?? sku;

  readonly priceOf = (sku: string): Money | null => {
    const p = this.products.get(sku);
    if (!p || typeof p.unit_price_cents !== "number") return null;
    return { cents: p.unit_price_cents, currency: p.currency || "EUR" };
  };

  // ---- drafts list -----------------------------------------------------

  /** refreshDrafts reloads the drafts list now. */
  async refreshDrafts(): Promise<void> {
    try {
      const { drafts } = await api.drafts();
      if (this.stopped) return;
      this.drafts = Array.isArray(drafts) ? drafts : [];
      this.draftsLoaded = true;
      this.draftsError = null;
      this.healSessions();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return;
      // A list already on screen stays; the connection status tells about
      // the network, so only a list that never loaded reports the error.
      if (!this.draftsLoaded) this.draftsError = errorMessage(e);
    }
    this.changed();
  }

  /** refreshDraftsSoon coalesces bursts of reasons to reload the list into one request. */
  refreshDraftsSoon(): void {
    if (this.refreshTimer !== null) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      void this.refreshDrafts();
    }, DRAFTS_DEBOUNCE_MS);
  }

  // A list newer than a session (a revision or state it has not seen) means
  // the session missed something, such as a failed submission putting the
  // draft back into editing: ask for a fresh snapshot.
  private healSessions(): void {
    for (const d of this.drafts) {
      const s = this.sessions.get(d.id);
      if (!s || !s.ready || !s.confirmed) continue;
      if (d.revision > s.confirmed.revision || (d.revision === s.confirmed.revision && d.state !== s.confirmed.state)) {
        this.resubscribeSoon(d.id);
      }
    }
  }

  /** draftSummaries is the list as shown: the open draft's live title and state replace the listed ones. */
  draftSummaries(): DraftSummary[] {
    const list = this.drafts.map((d) => {
      const view = this.sessions.get(d.id)?.view();
      return view ? { ...d, title: view.title, state: view.state } : d;
    });
    const open = this.openDraftId ? this.sessions.get(this.openDraftId)?.view() : null;
    if (open && !list.some((d) => d.id === open.id)) list.unshift(open);
    return list;
  }

  /** newDraft creates a draft and opens it. */
  async newDraft(): Promise<void> {
    if (this.creatingDraft) return;
    this.creatingDraft = true;
    this.createDraftError = null;
    this.changed();
    try {
      const draft = await api.createDraft(DEFAULT_DRAFT_TITLE);
      this.drafts = [draft, ...this.drafts.filter((d) => d.id !== draft.id)];
      this.openDraft(draft.id, "push");
      this.sessions.get(draft.id)?.loaded({ ...draft, items: Array.isArray(draft.items) ? draft.items : [] });
      this.refreshDraftsSoon();
    } catch (e) {
      this.createDraftError = errorMessage(e);
    } finally {
      this.creatingDraft = false;
      this.changed();
    }
  }

  // ---- the open draft --------------------------------------------------

  /** openSession is the session of the open draft. */
  openSession(): DraftSession | null {
    return this.openDraftId ? (this.sessions.get(this.openDraftId) ?? null) : null;
  }

  /** openDraft shows a draft (or none), reflecting it in the location. */
  openDraft(id: string | null, history: "push" | "replace" | "none"): void {
    const path = draftPath(id);
    if (history === "push" && location.pathname !== path) window.history.pushState(null, "", path);
    if (history === "replace") window.history.replaceState(null, "", path);
    if (this.openDraftId === id) return;
    const previous = this.openSession();
    if (previous) {
      previous.flushNow();
      previous.setFocus(null);
    }
    this.openDraftId = id;
    if (id) {
      const s = this.ensureSession(id);
      if (!s.confirmed) void this.loadDraft(s);
    }
    this.reapSessions();
    this.changed();
  }

  private ensureSession(id: string, subscribe = true): DraftSession {
    let s = this.sessions.get(id);
    if (!s) {
      s = new DraftSession(id, this.me.member.id, this.socket, this.nameOf, () => this.changed());
      this.sessions.set(id, s);
      if (subscribe && this.socket.open()) s.subscribe();
    }
    return s;
  }

  private async loadDraft(s: DraftSession): Promise<void> {
    try {
      const draft = await api.draft(s.draftId);
      s.loaded({ ...draft, items: Array.isArray(draft.items) ? draft.items : [] });
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) s.notFound();
      else if (!(e instanceof ApiError && e.status === 401)) this.notify(errorMessage(e));
    }
  }

  // Sessions of drafts no longer open stay subscribed only until their own
  // ops are acknowledged, so leaving a draft never loses an edit.
  private reapSessions(): void {
    for (const [id, s] of this.sessions) {
      if (id === this.openDraftId) continue;
      if (s.pending.length > 0 && !s.missing) continue;
      // Edits to a draft that does not exist (for this team) can never land.
      if (s.missing) s.forget();
      s.dispose();
      if (s.ready) s.unsubscribe();
      this.sessions.delete(id);
    }
  }

  private resubscribeSoon(draftId: string): void {
    if (this.resubscribeTimers.has(draftId)) return;
    this.resubscribeTimers.set(
      draftId,
      setTimeout(() => {
        this.resubscribeTimers.delete(draftId);
        this.sessions.get(draftId)?.subscribe();
      }, 150),
    );
  }

  private editable(s: DraftSession): boolean {
    const view = s.view();
    return !!view && view.state === "editing" && !this.submits.get(s.draftId)?.busy;
  }

  /** editTitle renames the open draft (typing: debounced). */
  editTitle(title: string): void {
    const s = this.openSession();
    if (!s || !this.editable(s)) return;
    s.edit({ kind: "set_title", title }, true);
  }

  /** editQuantity changes an item's quantity (typing: debounced). */
  editQuantity(itemId: string, quantity: number): void {
    const s = this.openSession();
    if (!s || !this.editable(s)) return;
    s.edit({ kind: "update_item", item_id: itemId, quantity }, true);
  }

  /** editNote changes an item's note (typing: debounced). */
  editNote(itemId: string, note: string): void {
    const s = this.openSession();
    if (!s || !this.editable(s)) return;
    s.edit({ kind: "update_item", item_id: itemId, note }, true);
  }

  /** addItem adds one of a product to the open draft. */
  addItem(sku: string): void {
    const s = this.openSession();
    if (!s || !this.editable(s) || !this.products.has(sku)) return;
    s.edit({ kind: "add_item", item: { id: crypto.randomUUID(), sku, quantity: 1, note: "" } }, false);
  }

  /** removeItem takes an item out of the open draft. */
  removeItem(itemId: string): void {
    const s = this.openSession();
    if (!s || !this.editable(s)) return;
    s.edit({ kind: "remove_item", item_id: itemId }, false);
  }

  /** refuseLocally shows why a typed value is not sent. */
  refuseLocally(reason: string): void {
    this.openSession()?.refuse(reason);
  }

  /** flushTyping sends waiting typing at once (a field lost focus). */
  flushTyping(): void {
    this.openSession()?.flushNow();
  }

  /** setFocus announces the field this member is on. */
  setFocus(field: string | null): void {
    this.openSession()?.setFocus(field);
  }

  // ---- submit ----------------------------------------------------------

  /** submitState is the open draft's submit state. */
  submitState(draftId: string): SubmitState {
    return this.submits.get(draftId) ?? { busy: false, phase: null, message: null, tone: "info" };
  }

  private setSubmit(draftId: string, st: SubmitState): void {
    this.submits.set(draftId, st);
    this.changed();
  }

  private waitFor(cond: () => boolean): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiters.push(() => {
        if (!cond()) return false;
        resolve();
        return true;
      });
    });
  }

  /**
   * submitOrder hands the open draft off. It first waits until every own
   * edit is acknowledged, then submits the confirmed revision: the one the
   * member is looking at.
   */
  async submitOrder(): Promise<void> {
    const s = this.openSession();
    if (!s) return;
    const id = s.draftId;
    const view = s.view();
    if (this.submitState(id).busy || !view || view.state !== "editing" || view.items.length === 0) return;

    this.setSubmit(id, { busy: true, phase: "saving", message: null, tone: "info" });
    const refusalBefore = s.refusal;
    s.flushNow();
    await this.waitFor(() => this.stopped || !s.saving() || (s.refusal !== null && s.refusal !== refusalBefore));
    if (this.stopped) return;
    if (s.saving() || (s.refusal !== null && s.refusal !== refusalBefore)) {
      this.setSubmit(id, {
        busy: false,
        phase: null,
        message: "One of your changes was refused. Check the order, then submit again.",
        tone: "error",
      });
      return;
    }
    const confirmed = s.confirmed;
    if (!confirmed || confirmed.items.length === 0 || confirmed.state !== "editing") {
      this.setSubmit(id, { busy: false, phase: null, message: null, tone: "info" });
      return;
    }

    this.setSubmit(id, { busy: true, phase: "sending", message: null, tone: "info" });
    try {
      const body = await api.submit(id, confirmed.revision);
      this.submitted(s, operationFrom(body), confirmed.revision);
      this.setSubmit(id, { busy: false, phase: null, message: null, tone: "info" });
    } catch (e) {
      let message = errorMessage(e);
      if (e instanceof ApiError && e.code === "stale_revision") {
        message = "Someone changed this draft since you last saw it. Review the changes, then submit again.";
        s.subscribe();
      } else if (e instanceof ApiError && e.code === "already_submitted") {
        this.submitted(s, operationFrom(e.detail), confirmed.revision);
        this.setSubmit(id, { busy: false, phase: null, message: null, tone: "info" });
        return;
      }
      this.setSubmit(id, { busy: false, phase: null, message, tone: "error" });
    }
  }

  private submitted(s: DraftSession, op: Operation | null, revision: number): void {
    if (op) mergeOperation(this.operations, op);
    s.frozen(revision, op ? { operation_id: op.id, message_id: op.message_id ?? "", revision } : null);
    s.subscribe();
    this.refreshDraftsSoon();
  }

  /** latestOperation is the newest submission of a draft. */
  latestOperation(draftId: string): Operation | null {
    return latestForDraft(this.operations.values(), draftId);
  }

  // ---- operations ------------------------------------------------------

  private async loadOperations(): Promise<void> {
    try {
      const { operations } = await api.operations();
      if (this.stopped) return;
      for (const op of Array.isArray(operations) ? operations : []) mergeOperation(this.operations, op);
      this.operationsLoaded = true;
      this.operationsError = null;
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return;
      this.operationsError = errorMessage(e);
    }
    this.changed();
  }

  /** retryState is one operation's Retry state. */
  retryState(id: string): RetryState {
    return this.retries.get(id) ?? { busy: false, error: null };
  }

  /** retryOperation asks the server to run a failed operation again. */
  async retryOperation(id: string): Promise<void> {
    if (this.retryState(id).busy) return;
    this.retries.set(id, { busy: true, error: null });
    this.changed();
    try {
      const body = await api.retry(id);
      const op = operationFrom(body);
      if (op) mergeOperation(this.operations, op);
      this.retries.set(id, { busy: false, error: null });
    } catch (e) {
      // A refusal carries the operation as the server sees it now: its
      // retryable may have turned false (someone edited the draft) without
      // a change of seq, so that copy wins over one of the same seq.
      const op = e instanceof ApiError && e.code === "not_retryable" ? operationFrom(e.detail) : null;
      if (op) refreshOperation(this.operations, op);
      this.retries.set(id, { busy: false, error: errorMessage(e) });
    }
    this.changed();
  }

  // ---- socket ----------------------------------------------------------

  private onMessage(msg: ServerMessage): void {
    switch (msg.type) {
      case "hello": {
        // Drafts left with unacknowledged edits (another draft, or before a
        // reload) get a session too, so those edits are resent and land.
        for (const id of draftsWithPending(this.me.member.id)) this.ensureSession(id, false);
        for (const s of this.sessions.values()) s.subscribe();
        void this.loadOperations();
        void this.refreshDrafts();
        break;
      }
      case "snapshot": {
        const d = msg.draft;
        if (!d || typeof d.id !== "string") return;
        const s = this.sessions.get(d.id);
        if (!s) return;
        const draft: Draft = { ...d, items: Array.isArray(d.items) ? d.items : [] };
        s.snapshot(draft);
        this.patchSummary(draft);
        this.reapSessions();
        this.refreshDraftsSoon();
        break;
      }
      case "applied": {
        const s = this.sessions.get(msg.draft_id);
        if (!s || !msg.op) return;
        const r = s.applied(msg.revision, msg.client_op_id, msg.op);
        if (r.gap) s.subscribe();
        this.draftTouched(msg.draft_id, msg.revision);
        if (r.titleChanged) this.refreshDraftsSoon();
        this.reapSessions();
        break;
      }
      case "rejected": {
        const s = this.sessions.get(msg.draft_id);
        if (!s) return;
        const error = msg.error ?? { code: "rejected", message: "" };
        // A session that holds this connection's snapshot knows the draft
        // exists: its "not_found" is about an item someone removed, and the
        // refusal (already shown) is all there is to it. Only before any
        // snapshot does it mean the draft itself is not there for this team.
        const draftKnown = s.ready;
        s.rejected(msg.client_op_id, error);
        if (error.code === "draft_submitted") s.subscribe();
        if (error.code === "not_found" && !draftKnown) s.notFound();
        this.reapSessions();
        break;
      }
      case "presence": {
        const s = this.sessions.get(msg.draft_id);
        if (s) s.setPresence(Array.isArray(msg.members) ? msg.members : []);
        break;
      }
      case "operation": {
        const op = msg.operation;
        if (!op || !mergeOperation(this.operations, op)) return;
        this.refreshDraftsSoon();
        const key = `${op.id}:${op.status}`;
        const before = this.lastOperationKey.get(op.draft_id);
        this.lastOperationKey.set(op.draft_id, key);
        if (this.sessions.has(op.draft_id) && before !== key && op.status !== "processing") {
          this.resubscribeSoon(op.draft_id);
        }
        this.changed();
        break;
      }
      case "draft": {
        // A teammate created or renamed a draft: the list follows at once.
        this.refreshDraftsSoon();
        break;
      }
      case "error": {
        const error = msg.error ?? { code: "error", message: "" };
        const target = msg.draft_id ? this.sessions.get(msg.draft_id) : this.openSession();
        if (error.code === "not_found" && target && !target.ready) {
          target.notFound();
          this.reapSessions();
          return;
        }
        this.notify(error.message || "The server could not handle a request.");
        break;
      }
      default:
        break;
    }
  }

  // A failed operation can be retried only while its draft is untouched
  // since (the server's rule); the server does not push the operation again
  // when an edit ends that, so an edit seen here takes Retry away at once.
  // A newer copy from the server (higher seq) replaces this one as usual.
  private draftTouched(draftId: string, revision: number): void {
    for (const op of this.operations.values()) {
      if (op.draft_id !== draftId || op.retryable !== true) continue;
      if (typeof op.revision === "number" && revision > op.revision) {
        this.operations.set(op.id, { ...op, retryable: false });
        this.changed();
      }
    }
  }

  private patchSummary(d: Draft): void {
    const i = this.drafts.findIndex((x) => x.id === d.id);
    if (i < 0) return;
    const old = this.drafts[i] as DraftSummary;
    if (old.title === d.title && old.state === d.state && old.revision === d.revision) return;
    const next = this.drafts.slice();
    next[i] = { ...old, title: d.title, state: d.state, revision: d.revision };
    this.drafts = next;
  }

  private onDropped(greeted: boolean): void {
    for (const s of this.sessions.values()) s.connectionLost();
    this.changed();
    // A socket refused before "hello" may mean the session is gone: ask once
    // in a while, and a 401 takes the member back to the sign-in screen.
    const now = Date.now();
    if (!greeted && now - this.lastProbe > 5000 && navigator.onLine !== false) {
      this.lastProbe = now;
      api.me().catch(() => {});
    }
  }

  // ---- page-wide -------------------------------------------------------

  /** notify shows a transient message. */
  notify(text: string): void {
    const id = ++this.noticeSeq;
    this.notices = [...this.notices, { id, text }].slice(-3);
    this.changed();
    setTimeout(() => this.dismiss(id), 8000);
  }

  /** dismiss removes one transient message. */
  dismiss(id: number): void {
    const before = this.notices.length;
    this.notices = this.notices.filter((n) => n.id !== id);
    if (this.notices.length !== before) this.changed();
  }

  /** inviteLink is the link that lets someone join this team. */
  inviteLink(): string {
    return `${location.origin}/join#${this.me.invite_token}`;
  }

  /** signOut ends the session and returns to the start screen. */
  async signOut(): Promise<void> {
    try {
      await api.logout();
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) {
        this.notify(errorMessage(e));
        return;
      }
    }
    clearAllPending();
    this.onSignedOut();
  }
}
