// Keeps each draft's unacknowledged ops in sessionStorage, so edits survive
// a reload of the tab and are resent (with the same client_op_id) after the
// next snapshot. Scoped by member, so another sign-in in the same tab never
// replays someone else's edits.

import type { Op } from "../types";
import type { PendingOp } from "./ops";

const PREFIX = "handoff:pending:";

function storage(): Storage | null {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}

function key(memberId: string, draftId: string): string {
  return `${PREFIX}${memberId}:${draftId}`;
}

interface Stored {
  client_op_id: string;
  op: Op;
}

function isStored(v: unknown): v is Stored {
  if (typeof v !== "object" || v === null) return false;
  const r = v as Record<string, unknown>;
  return (
    typeof r.client_op_id === "string" &&
    typeof r.op === "object" &&
    r.op !== null &&
    typeof (r.op as Record<string, unknown>).kind === "string"
  );
}

/**
 * loadPending reads a draft's stored ops. They count as sent: an earlier page
 * may have sent them already, so they are resent as they are and never merged
 * with new typing.
 */
export function loadPending(memberId: string, draftId: string): PendingOp[] {
  const s = storage();
  if (!s) return [];
  try {
    const raw = s.getItem(key(memberId, draftId));
    if (!raw) return [];
    const parsed: unknown = JSON.parse(raw);
    if (!Array.isArray(parsed)) return [];
    return parsed.filter(isStored).map((p) => ({ client_op_id: p.client_op_id, op: p.op, sent: true }));
  } catch {
    return [];
  }
}

/** savePending stores a draft's queue, or forgets it when the queue is empty. */
export function savePending(memberId: string, draftId: string, pending: readonly PendingOp[]): void {
  const s = storage();
  if (!s) return;
  try {
    if (pending.length === 0) {
      s.removeItem(key(memberId, draftId));
    } else {
      const stored: Stored[] = pending.map((p) => ({ client_op_id: p.client_op_id, op: p.op }));
      s.setItem(key(memberId, draftId), JSON.stringify(stored));
    }
  } catch {
    // Storage full or disabled: the ops still live in memory for this page.
  }
}

/** draftsWithPending lists the drafts of this member that have stored ops. */
export function draftsWithPending(memberId: string): string[] {
  const s = storage();
  if (!s) return [];
  const prefix = `${PREFIX}${memberId}:`;
  const ids: string[] = [];
  try {
    for (let i = 0; i < s.length; i++) {
      const k = s.key(i);
      if (k && k.startsWith(prefix)) ids.push(k.slice(prefix.length));
    }
  } catch {
    return [];
  }
  return ids;
}

/** clearAllPending forgets every stored op in this tab (on sign-out). */
export function clearAllPending(): void {
  const s = storage();
  if (!s) return;
  try {
    const keys: string[] = [];
    for (let i = 0; i < s.length; i++) {
      const k = s.key(i);
      if (k && k.startsWith(PREFIX)) keys.push(k);
    }
    for (const k of keys) s.removeItem(k);
  } catch {
    // Nothing to do.
  }
}
