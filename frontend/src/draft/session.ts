// DraftSession is the client side of one subscribed draft: the confirmed
// server state, the member's own pending ops, presence, and the sending of
// ops over the socket. The state transitions themselves are the pure
// functions of ./ops; this class adds timers, storage and the transport.

import type { ClientMessage, Draft, ErrorBody, Op, PresenceMember, Submission } from "../types";
import {
  applyConfirmed,
  enqueue,
  pendingMarks,
  rebase,
  withoutOp,
  type NameOf,
  type PendingOp,
} from "./ops";
import { loadPending, savePending } from "./pending-store";

/** Transport is the part of the socket a session needs. */
export interface Transport {
  /** send queues a frame on the open socket; false when there is none. */
  send(msg: ClientMessage): boolean;
  /** open is true while a socket is connected and greeted. */
  open(): boolean;
}

/** TYPING_DEBOUNCE_MS is how long typing pauses before its op is sent. */
export const TYPING_DEBOUNCE_MS = 250;
const BUSY_RETRY_MS = 1500;

// Codes that say "not now" rather than "no": the op is kept and sent again
// instead of being rolled back.
const RETRY_LATER = new Set(["rate_limited", "unavailable"]);

/** AppliedResult tells the owner what an applied message changed. */
export interface AppliedResult {
  gap: boolean;
  titleChanged: boolean;
}

export class DraftSession {
  readonly draftId: string;
  /** confirmed is the server's state as last seen (snapshot + applied ops), or null before the first. */
  confirmed: Draft | null = null;
  /** pending are this member's ops the server has not acknowledged, oldest first. */
  pending: readonly PendingOp[];
  /** refusal is why the latest edit was refused (shown in "Save state"), until the next edit. */
  refusal: string | null = null;
  /** presence lists who is looking at the draft now. */
  presence: PresenceMember[] = [];
  /** ready is true once a snapshot arrived on the current connection. */
  ready = false;
  /** missing is set when the server says the draft does not exist (for this team). */
  missing = false;
  /** focus is this member's focused field, announced as presence. */
  focus: string | null = null;

  private readonly memberId: string;
  private readonly transport: Transport;
  private readonly nameOf: NameOf;
  private readonly onChange: () => void;
  private sentOnConnection = new Set<string>();
  private flushTimer: ReturnType<typeof setTimeout> | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private cache: { confirmed: Draft; pending: readonly PendingOp[]; view: Draft } | null = null;

  constructor(draftId: string, memberId: string, transport: Transport, nameOf: NameOf, onChange: () => void) {
    this.draftId = draftId;
    this.memberId = memberId;
    this.transport = transport;
    this.nameOf = nameOf;
    this.onChange = onChange;
    this.pending = loadPending(memberId, draftId);
  }

  /** view is what the member sees: the confirmed draft with the pending ops on top. */
  view(): Draft | null {
    const confirmed = this.confirmed;
    if (!confirmed) return null;
    const c = this.cache;
    if (c && c.confirmed === confirmed && c.pending === this.pending) return c.view;
    const view = rebase(confirmed, this.pending, this.nameOf);
    this.cache = { confirmed, pending: this.pending, view };
    return view;
  }

  /** marks lists the parts of the view that are not saved yet. */
  marks(): Set<string> {
    return pendingMarks(this.pending);
  }

  /** saving is true while any own op waits for the server's acknowledgement. */
  saving(): boolean {
    return this.pending.length > 0;
  }

  /** subscribe asks for a (fresh) snapshot; it is sent on every (re)connect. */
  subscribe(): void {
    this.transport.send({ type: "subscribe", draft_id: this.draftId });
  }

  /** unsubscribe tells the server this tab stops looking at the draft. */
  unsubscribe(): void {
    this.transport.send({ type: "unsubscribe", draft_id: this.draftId });
  }

  /** connectionLost forgets what was sent on the socket that closed; everything pending is resent later. */
  connectionLost(): void {
    this.ready = false;
    this.sentOnConnection.clear();
    this.presence = [];
  }

  /** loaded takes the draft from an HTTP answer, until the socket's snapshot arrives. */
  loaded(draft: Draft): void {
    if (this.ready) return;
    if (this.confirmed && this.confirmed.revision > draft.revision) return;
    this.confirmed = draft;
    this.missing = false;
    this.onChange();
  }

  /**
   * frozen shows a successful submit at once, before the fresh snapshot that
   * confirms it arrives; only when the submitted revision is the one held.
   */
  frozen(revision: number, submission: Submission | null): void {
    if (!this.confirmed || this.confirmed.revision !== revision) return;
    // The member chose to submit what is on screen; older refusals are moot.
    this.refusal = null;
    this.confirmed = { ...this.confirmed, state: "submitted", submission: submission ?? this.confirmed.submission ?? null };
    this.onChange();
  }

  /** notFound records that the draft does not exist for this team. */
  notFound(): void {
    this.missing = true;
    this.onChange();
  }

  /** snapshot replaces the confirmed state, then sends whatever this connection has not carried yet. */
  snapshot(draft: Draft): void {
    this.confirmed = draft;
    this.ready = true;
    this.missing = false;
    if (this.focus !== null) this.sendPresence();
    this.flush();
    this.onChange();
  }

  /** applied folds one applied op into the confirmed state and acknowledges it if it was ours. */
  applied(revision: number, clientOpId: string, op: Op): AppliedResult {
    const before = this.pending;
    this.pending = withoutOp(this.pending, clientOpId);
    if (this.pending !== before) {
      this.sentOnConnection.delete(clientOpId);
      this.persist();
    }
    let gap = false;
    if (this.confirmed) {
      const outcome = applyConfirmed(this.confirmed, revision, op, this.nameOf);
      if (outcome.kind === "advanced") this.confirmed = outcome.draft;
      gap = outcome.kind === "gap";
    }
    this.onChange();
    return { gap, titleChanged: op.kind === "set_title" };
  }

  /** rejected drops one of our ops (rolling the view back) and says why, or retries it later when the server was busy. */
  rejected(clientOpId: string, error: ErrorBody): void {
    const known = this.pending.some((p) => p.client_op_id === clientOpId);
    if (!known) return;
    if (RETRY_LATER.has(error.code)) {
      this.sentOnConnection.delete(clientOpId);
      this.scheduleRetry();
      return;
    }
    this.pending = withoutOp(this.pending, clientOpId);
    this.sentOnConnection.delete(clientOpId);
    this.persist();
    this.refusal = error.message || "The server refused this change, so it was undone.";
    this.onChange();
  }

  /** setPresence replaces who is looking at the draft. */
  setPresence(members: PresenceMember[]): void {
    this.presence = members;
    this.onChange();
  }

  /**
   * edit queues a local op and shows it at once. Typing (debounce true) waits
   * for a pause before sending and merges into the op still waiting; any
   * other edit is sent at once, together with whatever typing is waiting.
   */
  edit(op: Op, debounce: boolean): void {
    this.pending = enqueue(this.pending, op, () => crypto.randomUUID());
    this.refusal = null;
    this.persist();
    if (debounce) {
      if (this.flushTimer !== null) clearTimeout(this.flushTimer);
      this.flushTimer = setTimeout(() => {
        this.flushTimer = null;
        this.flush();
      }, TYPING_DEBOUNCE_MS);
    } else {
      this.flushNow();
    }
    this.onChange();
  }

  /** refuse shows a local reason in "Save state" without sending anything. */
  refuse(reason: string): void {
    this.refusal = reason;
    this.onChange();
  }

  /** clearRefusal hides a shown reason, if it is still this one. */
  clearRefusal(reason: string): void {
    if (this.refusal !== reason) return;
    this.refusal = null;
    this.onChange();
  }

  /** flushNow sends waiting typing right away (on blur, submit, leaving the page). */
  flushNow(): void {
    if (this.flushTimer !== null) {
      clearTimeout(this.flushTimer);
      this.flushTimer = null;
    }
    this.flush();
  }

  /** setFocus announces which field this member is on. */
  setFocus(focus: string | null): void {
    if (this.focus === focus) return;
    this.focus = focus;
    this.sendPresence();
  }

  /** forget drops every pending op, here and in storage. */
  forget(): void {
    this.pending = [];
    this.sentOnConnection.clear();
    this.persist();
  }

  /** dispose stops the timers; the stored ops stay for the next visit. */
  dispose(): void {
    if (this.flushTimer !== null) clearTimeout(this.flushTimer);
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.flushTimer = null;
    this.retryTimer = null;
    if (this.focus !== null) {
      this.focus = null;
      this.sendPresence();
    }
  }

  private sendPresence(): void {
    if (!this.ready) return;
    this.transport.send({ type: "presence", draft_id: this.draftId, focus: this.focus });
  }

  // flush sends, in queue order, every pending op this connection has not
  // carried yet. Nothing goes out before the snapshot: resends follow the
  // fresh state, and base_revision is the revision the member has seen.
  private flush(): void {
    if (!this.ready || !this.transport.open() || !this.confirmed) return;
    let changed = false;
    const next = this.pending.slice();
    for (let i = 0; i < next.length; i++) {
      const p = next[i] as PendingOp;
      if (this.sentOnConnection.has(p.client_op_id)) continue;
      const ok = this.transport.send({
        type: "op",
        draft_id: this.draftId,
        client_op_id: p.client_op_id,
        base_revision: this.confirmed.revision,
        op: p.op,
      });
      if (!ok) break;
      this.sentOnConnection.add(p.client_op_id);
      if (!p.sent) {
        next[i] = { ...p, sent: true };
        changed = true;
      }
    }
    if (changed) this.pending = next;
  }

  private scheduleRetry(): void {
    if (this.retryTimer !== null) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.flush();
    }, BUSY_RETRY_MS);
  }

  private persist(): void {
    savePending(this.memberId, this.draftId, this.pending);
  }
}
