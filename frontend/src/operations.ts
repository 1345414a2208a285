// The submissions panel's data: every operation of the team, keyed by id,
// keeping only the newest copy of each (the highest seq), since pushes are
// at-least-once and may arrive out of order.

import type { Operation } from "./types";

/** mergeOperation stores op unless a copy with the same or a higher seq is known; true when it changed the map. */
export function mergeOperation(ops: Map<string, Operation>, op: Operation): boolean {
  if (!op || typeof op.id !== "string") return false;
  const known = ops.get(op.id);
  const seq = typeof op.seq === "number" ? op.seq : -1;
  if (known && (typeof known.seq === "number" ? known.seq : -1) >= seq) return false;
  ops.set(op.id, op);
  return true;
}

/** refreshOperation stores op unless a copy with a higher seq is known (an equal seq is replaced). */
export function refreshOperation(ops: Map<string, Operation>, op: Operation): void {
  if (!op || typeof op.id !== "string") return;
  const known = ops.get(op.id);
  const seq = typeof op.seq === "number" ? op.seq : -1;
  if (known && (typeof known.seq === "number" ? known.seq : -1) > seq) return;
  ops.set(op.id, op);
}

function time(iso: string | undefined): number {
  if (!iso) return 0;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? 0 : t;
}

/** newestFirst orders operations by submission time, newest first. */
export function newestFirst(ops: Iterable<Operation>): Operation[] {
  return [...ops].sort((a, b) => {
    const d = time(b.submitted_at) - time(a.submitted_at);
    if (d !== 0) return d;
    return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
  });
}

/** latestForDraft is the newest operation of one draft, if any. */
export function latestForDraft(ops: Iterable<Operation>, draftId: string): Operation | null {
  let best: Operation | null = null;
  for (const op of ops) {
    if (op.draft_id !== draftId) continue;
    if (!best || time(op.submitted_at) > time(best.submitted_at)) best = op;
  }
  return best;
}

/** failureReason is why an operation failed, in the server's plain words. */
export function failureReason(op: Operation): string {
  if (op.error && typeof op.error.message === "string" && op.error.message) return op.error.message;
  const step = (op.steps ?? []).find((s) => s.status === "failed" && s.error);
  if (step?.error) return step.error;
  return "Processing failed.";
}
