// Pure functions of the collaboration model (DESIGN.md, Collaboration model).
//
// The server is the authority: the client keeps the confirmed draft (the
// snapshot plus every `applied` op, in revision order) and a queue of its own
// ops that the server has not acknowledged yet. What the member sees is the
// confirmed draft with those pending ops re-applied on top, so a remote op
// that lands first is rebased under the local ones, and a rejected op simply
// disappears from the queue (rolling the view back).

import type { Draft, Item, Op } from "../types";

/** PendingOp is one of the member's own ops, not yet acknowledged by the server. */
export interface PendingOp {
  client_op_id: string;
  op: Op;
  /**
   * sent is true once the op may have reached the server. From then on the op
   * never changes: a resend must carry exactly what the server may have
   * applied under that client_op_id.
   */
  sent: boolean;
}

/** NameOf resolves a catalog sku to the product's display name. */
export type NameOf = (sku: string) => string;

/**
 * applyOp returns the draft with op applied, the way the server applies it.
 * An op that does not apply (an item that no longer exists, an item id that
 * already exists) leaves the draft unchanged and returns the same object.
 */
export function applyOp(draft: Draft, op: Op, nameOf: NameOf): Draft {
  switch (op.kind) {
    case "set_title":
      return draft.title === op.title ? draft : { ...draft, title: op.title };
    case "add_item": {
      if (draft.items.some((it) => it.id === op.item.id)) return draft;
      const item: Item = {
        id: op.item.id,
        sku: op.item.sku,
        name: nameOf(op.item.sku),
        quantity: op.item.quantity,
        note: op.item.note,
      };
      return { ...draft, items: [...draft.items, item] };
    }
    case "update_item": {
      const idx = draft.items.findIndex((it) => it.id === op.item_id);
      if (idx < 0) return draft;
      const old = draft.items[idx] as Item;
      const next: Item = {
        ...old,
        quantity: op.quantity !== undefined ? op.quantity : old.quantity,
        note: op.note !== undefined ? op.note : old.note,
      };
      if (next.quantity === old.quantity && next.note === old.note) return draft;
      const items = draft.items.slice();
      items[idx] = next;
      return { ...draft, items };
    }
    case "remove_item": {
      if (!draft.items.some((it) => it.id === op.item_id)) return draft;
      return { ...draft, items: draft.items.filter((it) => it.id !== op.item_id) };
    }
  }
}

/** rebase is the view: the confirmed draft with every pending op applied on top, in order. */
export function rebase(confirmed: Draft, pending: readonly PendingOp[], nameOf: NameOf): Draft {
  let view = confirmed;
  for (const p of pending) view = applyOp(view, p.op, nameOf);
  return view;
}

/** AppliedOutcome says what an `applied` message did to the confirmed draft. */
export type AppliedOutcome =
  | { kind: "advanced"; draft: Draft }
  | { kind: "duplicate" }
  | { kind: "gap" };

/**
 * applyConfirmed folds one `applied` message into the confirmed draft. Only
 * the next revision advances it; an older one is a duplicate (the answer to
 * a resend after reconnect, already in the snapshot); a later one means a
 * message was missed, and the caller must fetch a fresh snapshot.
 */
export function applyConfirmed(
  confirmed: Draft,
  revision: number,
  op: Op,
  nameOf: NameOf,
): AppliedOutcome {
  if (revision <= confirmed.revision) return { kind: "duplicate" };
  if (revision > confirmed.revision + 1) return { kind: "gap" };
  const draft = applyOp(confirmed, op, nameOf);
  return { kind: "advanced", draft: { ...draft, revision } };
}

/**
 * fieldOf names the single field an op writes, for ops that typing produces
 * ("title", "item:<id>:quantity", "item:<id>:note"), or null for any other.
 */
export function fieldOf(op: Op): string | null {
  if (op.kind === "set_title") return "title";
  if (op.kind === "update_item") {
    const q = op.quantity !== undefined;
    const n = op.note !== undefined;
    if (q && !n) return `item:${op.item_id}:quantity`;
    if (n && !q) return `item:${op.item_id}:note`;
  }
  return null;
}

/**
 * enqueue adds a new local op to the queue. When the last queued op has not
 * been sent yet and writes the same single field, the new value replaces it
 * instead (typing coalesces into one op per pause, and only the last value
 * matters). Returns the new queue; the input is not modified.
 */
export function enqueue(pending: readonly PendingOp[], op: Op, newId: () => string): PendingOp[] {
  const last = pending[pending.length - 1];
  const field = fieldOf(op);
  if (last && !last.sent && field !== null && fieldOf(last.op) === field) {
    return [...pending.slice(0, -1), { ...last, op }];
  }
  return [...pending, { client_op_id: newId(), op, sent: false }];
}

/** withoutOp removes the op with this client_op_id; the same array when it is not queued. */
export function withoutOp(pending: readonly PendingOp[], clientOpId: string): readonly PendingOp[] {
  const idx = pending.findIndex((p) => p.client_op_id === clientOpId);
  if (idx < 0) return pending;
  return [...pending.slice(0, idx), ...pending.slice(idx + 1)];
}

/**
 * pendingMarks lists what the queued ops touch ("title", "item:<id>" for an
 * added item, "item:<id>:quantity", "item:<id>:note"), so the view can mark
 * the unsaved parts.
 */
export function pendingMarks(pending: readonly PendingOp[]): Set<string> {
  const marks = new Set<string>();
  for (const { op } of pending) {
    switch (op.kind) {
      case "set_title":
        marks.add("title");
        break;
      case "add_item":
        marks.add(`item:${op.item.id}`);
        break;
      case "update_item":
        if (op.quantity !== undefined) marks.add(`item:${op.item_id}:quantity`);
        if (op.note !== undefined) marks.add(`item:${op.item_id}:note`);
        break;
      case "remove_item":
        break;
    }
  }
  return marks;
}

/** Money is an amount in one currency, in cents. */
export interface Money {
  cents: number;
  currency: string;
}

/** PriceOf resolves a sku to its unit price, or null when the catalog does not know it. */
export type PriceOf = (sku: string) => Money | null;

/** lineTotal is an item's price (unit price times quantity), or null when the price is unknown. */
export function lineTotal(item: Item, priceOf: PriceOf): Money | null {
  const unit = priceOf(item.sku);
  if (!unit) return null;
  return { cents: unit.cents * item.quantity, currency: unit.currency };
}

/** orderTotals sums the line prices per currency, in the order the currencies first appear. */
export function orderTotals(items: readonly Item[], priceOf: PriceOf): Money[] {
  const sums = new Map<string, number>();
  for (const item of items) {
    const line = lineTotal(item, priceOf);
    if (!line) continue;
    sums.set(line.currency, (sums.get(line.currency) ?? 0) + line.cents);
  }
  return [...sums].map(([currency, cents]) => ({ currency, cents }));
}
