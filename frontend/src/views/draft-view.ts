// The main area "Draft": the open draft's title, who is here, its items,
// adding products, the total, the save state and the submit button.

import type { App } from "../app";
import { h, replaceChildren, setAttr, setClass, setDisabled, setHidden, setText, setValue, showOnly, syncList } from "../dom";
import { lineTotal, orderTotals } from "../draft/ops";
import { failureReason } from "../operations";
import type { DraftSession } from "../draft/session";
import { formatMoney, formatTotals, formatWhen } from "../format";
import type { Draft, Item, PresenceMember, Product } from "../types";

const QUANTITY_MIN = 1;
const QUANTITY_MAX = 10000;
const TITLE_MAX = 200;
const NOTE_MAX = 1000;

const EMPTY_TITLE = "A draft needs a title; type one to keep your change.";
const BAD_QUANTITY = `Quantity must be a whole number from ${QUANTITY_MIN} to ${QUANTITY_MAX}.`;

interface RowRefs {
  name: HTMLElement;
  unit: HTMLElement;
  quantity: HTMLInputElement;
  quantityCell: HTMLElement;
  quantityChips: HTMLElement;
  note: HTMLInputElement;
  noteCell: HTMLElement;
  noteChips: HTMLElement;
  price: HTMLElement;
  remove: HTMLButtonElement;
}

/** memberHue gives each member a stable colour. */
export function memberHue(id: string): number {
  let n = 0;
  for (let i = 0; i < id.length; i++) n = (n * 31 + id.charCodeAt(i)) >>> 0;
  return n % 360;
}

// A chip names a member who is on the field beside it. The field points at
// its chips with aria-describedby, so "Bob is here" is read with the field.
function chip(m: PresenceMember): HTMLElement {
  const el = h(
    "span",
    { class: "chip", title: `${m.display_name} is here` },
    h("span", { class: "chip-name" }, m.display_name),
    h("span", { class: "sr-only" }, " is here"),
  );
  el.style.setProperty("--hue", String(memberHue(m.id)));
  return el;
}

function patchChip(el: HTMLElement, m: PresenceMember): void {
  setText(el.querySelector(".chip-name") as HTMLElement, m.display_name);
  setAttr(el, "title", `${m.display_name} is here`);
}

let chipsSeq = 0;

/** describedByChips gives a chips element an id and makes it the field's description. */
function describedByChips(input: HTMLInputElement, chips: HTMLElement): void {
  chips.id = `chips-${++chipsSeq}`;
  input.setAttribute("aria-describedby", chips.id);
}

function initials(name: string): string {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  return ((parts[0]?.[0] ?? "?") + (parts.length > 1 ? (parts[parts.length - 1]?.[0] ?? "") : "")).toUpperCase();
}

function progressSentence(status: string | undefined): string {
  switch (status) {
    case "pending":
      return "It is waiting to be picked up; follow it under Submissions.";
    case "processing":
      return "It is being processed; follow it under Submissions.";
    case "completed":
      return "It has been processed; see the result under Submissions.";
    default:
      return "Follow its processing under Submissions.";
  }
}

export class DraftView {
  readonly el: HTMLElement;
  private readonly app: App;
  private readonly placeholder: HTMLElement;
  private readonly body: HTMLElement;
  private readonly title: HTMLInputElement;
  private readonly titleChips: HTMLElement;
  private readonly stateBadge: HTMLElement;
  private readonly presence: HTMLUListElement;
  private readonly notice: HTMLElement;
  private readonly tbody: HTMLTableSectionElement;
  private readonly itemsEmpty: HTMLElement;
  private readonly product: HTMLSelectElement;
  private readonly productPrice: HTMLElement;
  private readonly addButton: HTMLButtonElement;
  private readonly catalogNote: HTMLElement;
  private readonly total: HTMLElement;
  private readonly saveState: HTMLElement;
  private readonly submitButton: HTMLButtonElement;
  private readonly submitStatus: HTMLElement;
  private readonly rows = new WeakMap<HTMLElement, RowRefs>();
  private placeholderKey = "";
  private blurTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(app: App) {
    this.app = app;
    this.placeholder = h("div", { class: "placeholder" });

    this.title = h("input", {
      id: "draft-title",
      type: "text",
      class: "title-input",
      maxLength: TITLE_MAX,
      autocomplete: "off",
      "data-focus": "title",
    });
    this.titleChips = h("span", { class: "chips" });
    describedByChips(this.title, this.titleChips);
    this.stateBadge = h("span", { class: "badge big" });
    this.presence = h("ul", { class: "presence-list", "aria-label": "In this draft" });
    this.notice = h("div", { class: "draft-notice", hidden: true });

    this.tbody = h("tbody");
    const table = h(
      "table",
      { class: "items", "aria-label": "Items" },
      h(
        "thead",
        null,
        h(
          "tr",
          null,
          h("th", { scope: "col" }, "Product"),
          h("th", { scope: "col", class: "col-qty" }, "Quantity"),
          h("th", { scope: "col" }, "Note"),
          h("th", { scope: "col", class: "num" }, "Price"),
          h("th", { scope: "col", class: "col-actions" }, h("span", { class: "sr-only" }, "Actions")),
        ),
      ),
      this.tbody,
    );
    this.itemsEmpty = h("p", { class: "empty items-empty" });
    this.itemsEmpty.dataset.text = "No items yet. Choose a product below and add it.";

    this.product = h("select", { id: "product-select" });
    this.productPrice = h("span", { class: "unit-price" });
    this.addButton = h("button", { type: "button", class: "btn" }, "Add item");
    this.catalogNote = h("p", { class: "hint" });

    this.total = h("strong", { class: "total-amount" });
    this.saveState = h("p", { role: "status", "aria-label": "Save state", class: "save-state" });
    this.submitButton = h("button", { type: "button", class: "btn primary big" }, "Submit order");
    this.submitStatus = h("p", { class: "submit-status", "aria-live": "polite" });

    this.body = h(
      "div",
      { class: "draft-body" },
      h(
        "div",
        { class: "draft-head" },
        h(
          "div",
          { class: "field title-field" },
          h("label", { for: "draft-title" }, "Title"),
          h("div", { class: "with-chips" }, this.title, this.titleChips),
        ),
        this.stateBadge,
      ),
      h("div", { class: "presence" }, h("span", { class: "presence-label", "aria-hidden": "true" }, "In this draft"), this.presence),
      this.notice,
      h("div", { class: "table-wrap" }, table),
      this.itemsEmpty,
      h(
        "div",
        { class: "add-item" },
        h("div", { class: "field" }, h("label", { for: "product-select" }, "Product"), h("div", { class: "with-price" }, this.product, this.productPrice)),
        this.addButton,
      ),
      this.catalogNote,
      h(
        "div",
        { class: "draft-foot" },
        h("div", { class: "total" }, h("span", { class: "total-label" }, "Total"), " ", this.total),
        this.saveState,
        h("div", { class: "submit" }, this.submitButton, this.submitStatus),
      ),
    );

    this.el = h("main", { class: "panel draft-panel", "aria-label": "Draft" }, this.placeholder, this.body);
    this.wire();
  }

  private session(): DraftSession | null {
    return this.app.openSession();
  }

  private wire(): void {
    const app = this.app;

    this.title.addEventListener("input", () => {
      const v = this.title.value;
      if (v.trim() === "") {
        this.title.dataset.hold = "1";
        app.refuseLocally(EMPTY_TITLE);
        return;
      }
      this.release(this.title, EMPTY_TITLE);
      app.editTitle(v);
    });
    this.title.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") this.title.blur();
    });

    this.tbody.addEventListener("input", (ev) => {
      const input = ev.target;
      if (!(input instanceof HTMLInputElement)) return;
      const itemId = input.closest("tr")?.dataset.item;
      if (!itemId) return;
      if (input.dataset.kind === "quantity") {
        const raw = input.value.trim();
        const n = raw === "" ? NaN : Number(raw);
        if (raw === "") {
          input.dataset.hold = "1";
          return;
        }
        if (!Number.isInteger(n)) {
          input.dataset.hold = "1";
          app.refuseLocally(BAD_QUANTITY);
          return;
        }
        // Out-of-range whole numbers go to the server, which is the
        // authority on limits; its refusal is shown and rolled back.
        this.release(input, BAD_QUANTITY);
        app.editQuantity(itemId, n);
      } else if (input.dataset.kind === "note") {
        app.editNote(itemId, input.value);
      }
    });

    this.tbody.addEventListener("click", (ev) => {
      const button = (ev.target as Element).closest("button[data-remove]");
      if (!(button instanceof HTMLButtonElement)) return;
      const itemId = button.closest("tr")?.dataset.item;
      if (itemId) {
        app.removeItem(itemId);
        this.product.focus();
      }
    });

    // Presence: which field this member is on. A blur waits a tick so that
    // moving from one field to the next announces only the new one.
    this.el.addEventListener("focusin", (ev) => {
      const t = ev.target as HTMLElement;
      const field = this.focusName(t);
      if (this.blurTimer !== null) {
        clearTimeout(this.blurTimer);
        this.blurTimer = null;
      }
      app.setFocus(field);
    });
    this.el.addEventListener("focusout", (ev) => {
      const t = ev.target as HTMLElement;
      if (t instanceof HTMLInputElement) {
        if (t.dataset.hold === "1") {
          // Give up a value that was never valid: show the draft's value again.
          delete t.dataset.hold;
          this.app.openSession()?.clearRefusal(EMPTY_TITLE);
          this.app.openSession()?.clearRefusal(BAD_QUANTITY);
          this.forceValue(t);
        }
        app.flushTyping();
      }
      if (this.blurTimer !== null) clearTimeout(this.blurTimer);
      this.blurTimer = setTimeout(() => {
        this.blurTimer = null;
        if (!this.el.contains(document.activeElement) || !this.focusName(document.activeElement as HTMLElement)) {
          app.setFocus(null);
        }
      }, 0);
    });

    this.product.addEventListener("change", () => this.updateProductPrice());
    this.addButton.addEventListener("click", () => {
      if (this.product.value) app.addItem(this.product.value);
    });
    this.submitButton.addEventListener("click", () => void app.submitOrder());
  }

  private release(input: HTMLInputElement, localReason: string): void {
    if (input.dataset.hold === "1") {
      delete input.dataset.hold;
      this.app.openSession()?.clearRefusal(localReason);
    }
  }

  private focusName(t: HTMLElement | null): string | null {
    if (!t) return null;
    if (t === this.title) return "title";
    if (t instanceof HTMLInputElement && t.dataset.kind) {
      const itemId = t.closest("tr")?.dataset.item;
      if (itemId) return `item:${itemId}:${t.dataset.kind}`;
    }
    return null;
  }

  private forceValue(input: HTMLInputElement): void {
    const view = this.session()?.view();
    if (!view) return;
    if (input === this.title) {
      input.value = view.title;
      return;
    }
    const itemId = input.closest("tr")?.dataset.item;
    const item = view.items.find((it) => it.id === itemId);
    if (!item) return;
    input.value = input.dataset.kind === "quantity" ? String(item.quantity) : item.note;
  }

  update(): void {
    const s = this.session();
    const view = s?.view() ?? null;
    if (!s || !view) {
      this.showPlaceholder(s);
      return;
    }
    if (this.placeholderKey !== "") {
      replaceChildren(this.placeholder);
      this.placeholderKey = "";
    }
    setHidden(this.placeholder, true);
    setHidden(this.body, false);
    document.title = `${view.title || "Untitled"} · handoff`;

    const submit = this.app.submitState(s.draftId);
    const locked = view.state !== "editing" || submit.busy;
    const marks = s.marks();
    const others = this.othersByField(s);

    // Title
    setValue(this.title, view.title);
    this.lock(this.title, locked);
    setClass(this.title, "unsaved", marks.has("title"));
    this.renderChips(this.titleChips, others.get("title"));
    setText(this.stateBadge, view.state === "submitted" ? "Submitted" : "Editing");
    this.stateBadge.dataset.state = view.state;

    // Presence
    const meId = this.app.me.member.id;
    const seen = new Set<string>();
    const members = s.presence.filter((m) => {
      // One entry per member even with several tabs open.
      if (seen.has(m.id)) return false;
      seen.add(m.id);
      return true;
    });
    syncList(
      this.presence,
      members,
      (m) => m.id,
      (m) => {
        const li = h("li", { class: "member" }, h("span", { class: "avatar", "aria-hidden": "true" }), h("span", { class: "member-name" }));
        li.style.setProperty("--hue", String(memberHue(m.id)));
        return li;
      },
      (li, m) => {
        setAttr(li.querySelector(".avatar") as HTMLElement, "data-initials", initials(m.display_name));
        setText(li.querySelector(".member-name") as HTMLElement, m.id === meId ? `${m.display_name} (you)` : m.display_name);
      },
    );

    this.renderNotice(view);

    // Items
    syncList(
      this.tbody,
      view.items,
      (it) => it.id,
      (it) => this.createRow(it),
      (tr, it) => this.patchRow(tr, it, locked, marks, others),
    );
    showOnly(this.itemsEmpty, view.items.length === 0);

    // Adding
    this.renderProducts(this.app.catalog);
    setDisabled(this.product, locked || this.app.catalog.length === 0);
    setDisabled(this.addButton, locked || this.app.catalog.length === 0);
    setText(
      this.catalogNote,
      this.app.catalogError
        ? `The catalog could not be loaded: ${this.app.catalogError}`
        : this.app.catalogLoaded && this.app.catalog.length === 0
          ? "The catalog is empty."
          : "",
    );
    setHidden(this.catalogNote, this.catalogNote.textContent === "");

    // Total, save state, submit
    setText(this.total, formatTotals(orderTotals(view.items, this.app.priceOf)));
    let saveText: string;
    let saveTone: string;
    if (s.refusal) {
      saveText = s.refusal;
      saveTone = "refused";
    } else if (s.saving()) {
      saveText = "Saving...";
      saveTone = "saving";
    } else {
      saveText = "All changes saved";
      saveTone = "saved";
    }
    setText(this.saveState, saveText);
    this.saveState.dataset.tone = saveTone;
    setClass(this.saveState, "offline", s.saving() && this.app.connection !== "connected");

    setDisabled(this.submitButton, view.state !== "editing" || view.items.length === 0 || submit.busy);
    setAttr(this.submitButton, "aria-busy", submit.busy ? "true" : null);
    setClass(this.submitButton, "is-busy", submit.busy);
    let submitText = "";
    if (submit.phase === "saving") {
      submitText =
        this.app.connection === "connected"
          ? "Waiting for your changes to be saved..."
          : "Waiting for the connection to save your changes first...";
    } else if (submit.phase === "sending") submitText = "Submitting...";
    else if (submit.message) submitText = submit.message;
    else if (view.state === "editing" && view.items.length === 0) submitText = "Add at least one item to submit.";
    setText(this.submitStatus, submitText);
    this.submitStatus.dataset.tone = submit.message ? submit.tone : "info";
    setAttr(this.submitStatus, "role", submit.message && submit.tone === "error" ? "alert" : null);
  }

  private showPlaceholder(s: DraftSession | null): void {
    setHidden(this.body, true);
    setHidden(this.placeholder, false);
    let key: string;
    if (!this.app.openDraftId) key = "none";
    else if (s?.missing) key = "missing";
    else key = "loading";
    if (key === this.placeholderKey) return;
    this.placeholderKey = key;
    if (key === "none") {
      document.title = `${this.app.me.team.name} · handoff`;
      replaceChildren(
        this.placeholder,
        h("h2", null, "No draft open"),
        h("p", null, "Pick a draft from the list, or start one with New draft. Everyone on your team can edit it with you, live."),
      );
    } else if (key === "missing") {
      document.title = "Draft not found · handoff";
      replaceChildren(
        this.placeholder,
        h("h2", null, "Draft not found"),
        h("p", null, "This draft does not exist, or it belongs to another team. Pick one from the list."),
      );
    } else {
      replaceChildren(this.placeholder, h("p", { class: "loading" }, h("span", { class: "spinner" }), "Loading draft..."));
    }
  }

  private renderNotice(view: Draft): void {
    // The draft names its last submission; the newest known one stands in
    // until that operation has arrived.
    const named = view.submission?.operation_id ? this.app.operations.get(view.submission.operation_id) : undefined;
    const op = named ?? this.app.latestOperation(view.id);
    if (view.state === "submitted") {
      const who = op?.submitted_by?.display_name;
      const when = formatWhen(op?.submitted_at);
      const by = who ? ` by ${who}${when ? ` at ${when}` : ""}` : "";
      replaceChildren(
        this.notice,
        h("strong", null, "Submitted", by, "."),
        ` This order is read-only now. ${progressSentence(op?.status)}`,
      );
      this.notice.dataset.tone = "submitted";
      setHidden(this.notice, false);
    } else if (op && op.status === "failed") {
      const reason = failureReason(op);
      replaceChildren(
        this.notice,
        h("strong", null, "The last submission failed."),
        ` ${reason} `,
        op.retryable === true
          ? "The draft is open for editing again: retry it under Submissions, or change it and submit again."
          : "The draft is open for editing again: fix it and submit again.",
      );
      this.notice.dataset.tone = "failed";
      setHidden(this.notice, false);
    } else if (!this.notice.hidden) {
      replaceChildren(this.notice);
      setHidden(this.notice, true);
    }
  }

  private othersByField(s: DraftSession): Map<string, PresenceMember[]> {
    const meId = this.app.me.member.id;
    const map = new Map<string, PresenceMember[]>();
    for (const m of s.presence) {
      if (!m.focus || m.id === meId) continue;
      const list = map.get(m.focus) ?? [];
      if (!list.some((x) => x.id === m.id)) list.push(m);
      map.set(m.focus, list);
    }
    return map;
  }

  private renderChips(el: HTMLElement, members: PresenceMember[] | undefined): void {
    const list = members ?? [];
    syncList(el, list, (m) => m.id, chip, patchChip);
    setClass(el.parentElement as HTMLElement, "others-here", list.length > 0);
    const first = list[0];
    if (first) (el.parentElement as HTMLElement).style.setProperty("--hue", String(memberHue(first.id)));
  }

  private lock(input: HTMLInputElement, locked: boolean): void {
    if (input.readOnly !== locked) input.readOnly = locked;
    setDisabled(input, locked);
  }

  private createRow(item: Item): HTMLElement {
    const refs: RowRefs = {
      name: h("span", { class: "product-name" }),
      unit: h("span", { class: "unit" }),
      quantity: h("input", {
        type: "number",
        min: String(QUANTITY_MIN),
        max: String(QUANTITY_MAX),
        step: "1",
        inputMode: "numeric",
        "aria-label": "Quantity",
        "data-kind": "quantity",
        class: "qty-input",
      }),
      quantityCell: h("div", { class: "with-chips" }),
      quantityChips: h("span", { class: "chips" }),
      note: h("input", {
        type: "text",
        maxLength: NOTE_MAX,
        placeholder: "Add a note",
        "aria-label": "Note",
        "data-kind": "note",
        autocomplete: "off",
        class: "note-input",
      }),
      noteCell: h("div", { class: "with-chips" }),
      noteChips: h("span", { class: "chips" }),
      price: h("td", { class: "num price" }),
      remove: h("button", { type: "button", class: "btn ghost danger small", "data-remove": "" }, "Remove"),
    };
    describedByChips(refs.quantity, refs.quantityChips);
    describedByChips(refs.note, refs.noteChips);
    refs.quantityCell.append(refs.quantity, refs.quantityChips);
    refs.noteCell.append(refs.note, refs.noteChips);
    const tr = h(
      "tr",
      { "data-item": item.id },
      h("td", { class: "product" }, refs.name, refs.unit),
      h("td", { class: "col-qty" }, refs.quantityCell),
      h("td", null, refs.noteCell),
      refs.price,
      h("td", { class: "col-actions" }, refs.remove),
    );
    this.rows.set(tr, refs);
    return tr;
  }

  private patchRow(
    tr: HTMLElement,
    item: Item,
    locked: boolean,
    marks: Set<string>,
    others: Map<string, PresenceMember[]>,
  ): void {
    const r = this.rows.get(tr);
    if (!r) return;
    const product: Product | undefined = this.app.product(item.sku);
    setText(r.name, item.name || product?.name || item.sku);
    const unit = this.app.priceOf(item.sku);
    setText(r.unit, unit ? `${formatMoney(unit.cents, unit.currency)} each` : "");
    setValue(r.quantity, String(item.quantity));
    setValue(r.note, item.note ?? "");
    this.lock(r.quantity, locked);
    this.lock(r.note, locked);
    setDisabled(r.remove, locked);
    const line = lineTotal(item, this.app.priceOf);
    setText(r.price, line ? formatMoney(line.cents, line.currency) : "—");
    setClass(tr, "unsaved", marks.has(`item:${item.id}`));
    setClass(r.quantity, "unsaved", marks.has(`item:${item.id}:quantity`));
    setClass(r.note, "unsaved", marks.has(`item:${item.id}:note`));
    this.renderChips(r.quantityChips, others.get(`item:${item.id}:quantity`));
    this.renderChips(r.noteChips, others.get(`item:${item.id}:note`));
  }

  private renderProducts(products: readonly Product[]): void {
    const before = this.product.value;
    syncList(
      this.product,
      products,
      (p) => p.sku,
      (p) => h("option", { value: p.sku }, p.name),
      (o, p) => setText(o, p.name),
    );
    if (before && products.some((p) => p.sku === before) && this.product.value !== before) this.product.value = before;
    this.updateProductPrice();
  }

  private updateProductPrice(): void {
    const p = this.app.product(this.product.value);
    setText(this.productPrice, p ? `${formatMoney(p.unit_price_cents, p.currency)} each` : "");
  }
}
