// The complementary area "Submissions": every operation of the team, live,
// newest first, with its steps, its result or its reason.

import type { App } from "../app";
import { h, replaceChildren, setAttr, setHidden, setText, syncList } from "../dom";
import { formatMoney, formatWhen, operationStatusText, stepStatusText } from "../format";
import { failureReason, newestFirst } from "../operations";
import type { Operation, Step } from "../types";

interface OpRefs {
  title: HTMLElement;
  status: HTMLElement;
  meta: HTMLElement;
  steps: HTMLUListElement;
  result: HTMLElement;
  error: HTMLElement;
  retry: HTMLButtonElement;
  retryError: HTMLElement;
  actions: HTMLElement;
}

function record(v: unknown): Record<string, unknown> | null {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

/** describeResult turns a completed operation's result into words, or null when it has nothing to show. */
export function describeResult(result: unknown): { orderNumber: string | null; total: string | null } | null {
  const r = record(result);
  if (!r) return null;
  const num = r.order_number;
  const orderNumber = typeof num === "string" || typeof num === "number" ? String(num) : null;
  const cents = r.total_cents;
  const currency = typeof r.currency === "string" && r.currency ? r.currency : "EUR";
  const total = typeof cents === "number" && Number.isFinite(cents) ? formatMoney(cents, currency) : null;
  if (orderNumber === null && total === null) return null;
  return { orderNumber, total };
}

export class SubmissionsView {
  readonly el: HTMLElement;
  private readonly app: App;
  private readonly list: HTMLUListElement;
  private readonly empty: HTMLElement;
  private readonly error: HTMLElement;
  private readonly refs = new WeakMap<HTMLElement, OpRefs>();

  constructor(app: App) {
    this.app = app;
    this.list = h("ul", { class: "op-list", "aria-label": "Operations" });
    this.empty = h("p", { class: "empty" });
    this.error = h("p", { class: "form-error", role: "alert" });
    this.el = h(
      "aside",
      { class: "panel submissions-panel", "aria-label": "Submissions" },
      h("div", { class: "panel-head" }, h("h2", null, "Submissions")),
      this.error,
      this.empty,
      this.list,
    );
    this.list.addEventListener("click", (ev) => {
      const b = (ev.target as Element).closest("button[data-retry]");
      if (b instanceof HTMLButtonElement && b.dataset.retry) void this.app.retryOperation(b.dataset.retry);
    });
  }

  update(): void {
    const app = this.app;
    const ops = newestFirst(app.operations.values());
    setText(this.error, app.operationsError ? `Could not load earlier submissions: ${app.operationsError}` : "");
    setHidden(this.error, !app.operationsError);
    const emptyKey = ops.length > 0 ? "" : app.operationsLoaded ? "none" : "loading";
    if (this.empty.dataset.key !== emptyKey) {
      this.empty.dataset.key = emptyKey;
      replaceChildren(
        this.empty,
        emptyKey === "none"
          ? "Nothing submitted yet. When someone submits an order, its processing shows up here, live."
          : emptyKey === "loading"
            ? [h("span", { class: "spinner" }), "Loading submissions..."]
            : null,
      );
    }
    setHidden(this.empty, emptyKey === "");
    syncList(
      this.list,
      ops,
      (op) => op.id,
      (op) => this.create(op),
      (li, op) => this.patch(li, op),
    );
  }

  private create(op: Operation): HTMLElement {
    const r: OpRefs = {
      title: h("span", { class: "op-title" }),
      status: h("span", { class: "status" }),
      meta: h("p", { class: "op-meta" }),
      steps: h("ul", { class: "steps", "aria-label": "Steps" }),
      result: h("p", { class: "op-result" }),
      error: h("p", { class: "op-error" }),
      retry: h("button", { type: "button", class: "btn small", "data-retry": op.id }, "Retry"),
      retryError: h("p", { class: "form-error", role: "alert" }),
      actions: h("div", { class: "op-actions" }),
    };
    r.actions.append(r.retry, r.retryError);
    const li = h(
      "li",
      { class: "op" },
      h("div", { class: "op-head" }, r.title, r.status),
      r.meta,
      r.steps,
      r.result,
      r.error,
      r.actions,
    );
    this.refs.set(li, r);
    return li;
  }

  private patch(li: HTMLElement, op: Operation): void {
    const r = this.refs.get(li);
    if (!r) return;
    li.dataset.status = op.status;
    setText(r.title, op.draft_title || "Untitled order");
    setText(r.status, operationStatusText(op.status));
    r.status.dataset.status = op.status;

    const who = op.submitted_by?.display_name;
    const when = formatWhen(op.submitted_at);
    replaceMeta(r.meta, who ?? null, when, op.submitted_at ?? null);

    syncList(
      r.steps,
      Array.isArray(op.steps) ? op.steps : [],
      (s) => s.name,
      () =>
        h(
          "li",
          { class: "step" },
          h("span", { class: "step-icon", "aria-hidden": "true" }),
          h("span", { class: "step-name" }),
          " ",
          h("span", { class: "step-state" }),
          h("span", { class: "step-attempts" }),
          h("span", { class: "step-error" }),
        ),
      (el, s) => patchStep(el, s),
    );
    setHidden(r.steps, !Array.isArray(op.steps) || op.steps.length === 0);

    const result = op.status === "completed" ? describeResult(op.result) : null;
    if (result) {
      const parts: string[] = [];
      if (result.orderNumber) parts.push(`Order ${result.orderNumber}`);
      if (result.total) parts.push(`Total ${result.total}`);
      setText(r.result, parts.join(" · "));
    } else {
      setText(r.result, op.status === "completed" ? "Order confirmed." : "");
    }
    setHidden(r.result, op.status !== "completed");

    setText(r.error, op.status === "failed" ? failureReason(op) : "");
    setHidden(r.error, op.status !== "failed");

    const retry = this.app.retryState(op.id);
    const actions = r.actions;
    // Present only when it applies: a hidden button would still be text.
    if (op.retryable === true) {
      if (r.retry.parentElement !== actions) actions.prepend(r.retry);
    } else if (r.retry.parentElement) {
      r.retry.remove();
    }
    r.retry.disabled = retry.busy;
    setAttr(r.retry, "aria-busy", retry.busy ? "true" : null);
    setText(r.retryError, retry.error ?? "");
    setHidden(r.retryError, !retry.error);
    setHidden(actions, op.retryable !== true && !retry.error);
  }
}

function replaceMeta(el: HTMLElement, who: string | null, when: string, iso: string | null): void {
  const key = `${who ?? ""}|${iso ?? ""}|${when}`;
  if (el.dataset.key === key) return;
  el.dataset.key = key;
  const time = iso && when ? h("time", { dateTime: iso }, when) : null;
  replaceChildren(
    el,
    who ? `Submitted by ${who}` : "Submitted",
    time ? [" at ", time] : null,
  );
}

function patchStep(el: HTMLElement, s: Step): void {
  el.dataset.status = s.status;
  setText(el.querySelector(".step-name") as HTMLElement, s.name);
  setText(el.querySelector(".step-state") as HTMLElement, stepStatusText(s.status));
  const attempts = typeof s.attempts === "number" && s.attempts > 1 ? ` · ${s.attempts} attempts` : "";
  setText(el.querySelector(".step-attempts") as HTMLElement, attempts);
  // A failed step says why; a step still running after a failed try says
  // what went wrong last, so a slow retry does not look like a hang.
  let err = "";
  if (s.error && s.status === "failed") err = ` — ${s.error}`;
  else if (s.error && s.status === "running") err = ` — last try: ${s.error}; trying again`;
  setText(el.querySelector(".step-error") as HTMLElement, err);
}
