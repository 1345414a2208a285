// Formatting for the screen: money, times and status words.

import type { Money } from "./draft/ops";

const moneyFormats = new Map<string, Intl.NumberFormat>();

/** formatMoney shows an amount in cents in its currency, in the reader's locale. */
export function formatMoney(cents: number, currency: string): string {
  let f = moneyFormats.get(currency);
  if (!f) {
    try {
      f = new Intl.NumberFormat(undefined, { style: "currency", currency });
    } catch {
      f = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    }
    moneyFormats.set(currency, f);
  }
  const text = f.format(cents / 100);
  return f.resolvedOptions().style === "currency" ? text : `${text} ${currency}`;
}

/** formatTotals shows one or more per-currency sums. */
export function formatTotals(totals: readonly Money[]): string {
  if (totals.length === 0) return formatMoney(0, "EUR");
  return totals.map((t) => formatMoney(t.cents, t.currency)).join(" + ");
}

const timeOnly = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateAndTime = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});

/** formatWhen shows a time of today as "14:05" and an older one with its date. */
export function formatWhen(iso: string | undefined | null): string {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const now = new Date();
  const sameDay =
    d.getFullYear() === now.getFullYear() && d.getMonth() === now.getMonth() && d.getDate() === now.getDate();
  return sameDay ? timeOnly.format(d) : dateAndTime.format(d);
}

const OPERATION_STATUS: Record<string, string> = {
  pending: "Pending",
  processing: "Processing",
  completed: "Completed",
  failed: "Failed",
};

/** operationStatusText is the status word of an operation. */
export function operationStatusText(status: string): string {
  return OPERATION_STATUS[status] ?? capitalise(status);
}

const STEP_STATUS: Record<string, string> = {
  waiting: "Waiting",
  running: "Running",
  done: "Done",
  failed: "Failed",
  skipped: "Skipped",
};

/** stepStatusText is the state word of one processing step. */
export function stepStatusText(status: string): string {
  return STEP_STATUS[status] ?? capitalise(status);
}

/** draftStateText is the state word of a draft in the list. */
export function draftStateText(state: string): string {
  return state === "submitted" ? "Submitted" : "Editing";
}

function capitalise(s: string): string {
  const t = String(s ?? "").replace(/[_-]+/g, " ").trim();
  return t ? t[0]!.toUpperCase() + t.slice(1) : "";
}
