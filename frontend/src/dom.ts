// A small rendering layer: build elements with h(), then patch them in place
// with the set* helpers and keyed lists with syncList(). Patching (instead of
// rebuilding) keeps focus, caret and selection in the fields a member is
// typing in while other members' edits stream in.

export type Child = Node | string | number | null | undefined | false | Child[];

type Listener = (ev: Event) => void;
export type Props = Record<string, unknown>;

function append(parent: Node, child: Child): void {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const c of child) append(parent, c);
  } else if (child instanceof Node) {
    parent.appendChild(child);
  } else {
    parent.appendChild(document.createTextNode(String(child)));
  }
}

/**
 * h creates an element. Props: "class" sets className, "on<event>" adds a
 * listener, names with a dash (aria-*, data-*) and "role"/"for" become
 * attributes, anything else is set as a property (value, type, disabled...).
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props?: Props | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (props) {
    for (const [name, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") {
        el.className = String(value);
      } else if (name.startsWith("on") && typeof value === "function") {
        el.addEventListener(name.slice(2).toLowerCase(), value as Listener);
      } else if (name.includes("-") || name === "role" || name === "for") {
        el.setAttribute(name, value === true ? "" : String(value));
      } else {
        (el as unknown as Record<string, unknown>)[name] = value;
      }
    }
  }
  for (const c of children) append(el, c);
  return el;
}

/** setText replaces an element's text only when it differs. */
export function setText(el: Element, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

/** setAttr sets an attribute, or removes it for null/false. */
export function setAttr(el: Element, name: string, value: string | boolean | null | undefined): void {
  if (value === null || value === undefined || value === false) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
    return;
  }
  const v = value === true ? "" : value;
  if (el.getAttribute(name) !== v) el.setAttribute(name, v);
}

/** setClass toggles one class. */
export function setClass(el: Element, name: string, on: boolean): void {
  if (el.classList.contains(name) !== on) el.classList.toggle(name, on);
}

/** setHidden shows or hides an element. */
export function setHidden(el: HTMLElement, hidden: boolean): void {
  if (el.hidden !== hidden) el.hidden = hidden;
}

/**
 * showOnly shows an element with the text kept in its data-text only while
 * it is shown: hidden elements carry no text, so nothing on the page says
 * what is not on screen.
 */
export function showOnly(el: HTMLElement, shown: boolean): void {
  setText(el, shown ? (el.dataset.text ?? "") : "");
  setHidden(el, !shown);
}

/** setDisabled enables or disables a control. */
export function setDisabled(el: HTMLButtonElement | HTMLInputElement | HTMLSelectElement, disabled: boolean): void {
  if (el.disabled !== disabled) el.disabled = disabled;
}

/**
 * setValue writes a field's value unless the member is holding it: a focused
 * field marked with data-hold (a value being typed that is not an op yet) is
 * left alone. Writing only on change keeps the caret where it is.
 */
export function setValue(el: HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement, value: string): void {
  if (el.value === value) return;
  if (document.activeElement === el && el.dataset.hold === "1") return;
  el.value = value;
}

/** replaceChildren sets an element's children to exactly these. */
export function replaceChildren(el: Element, ...children: Child[]): void {
  const frag = document.createDocumentFragment();
  for (const c of children) append(frag, c);
  el.replaceChildren(frag);
}

const keyed = new WeakMap<Element, Map<string, HTMLElement>>();

/**
 * syncList makes parent's children one element per item, in order, reusing
 * the element of each key: create builds a new one, update patches it.
 * Elements already in place are not moved (moving a focused one would blur it).
 */
export function syncList<T>(
  parent: HTMLElement,
  items: readonly T[],
  key: (item: T) => string,
  create: (item: T) => HTMLElement,
  update: (el: HTMLElement, item: T) => void,
): void {
  const old = keyed.get(parent) ?? new Map<string, HTMLElement>();
  const next = new Map<string, HTMLElement>();
  for (const item of items) {
    const k = key(item);
    let el = old.get(k);
    if (!el) el = create(item);
    update(el, item);
    next.set(k, el);
  }
  for (const [k, el] of old) {
    if (!next.has(k)) el.remove();
  }
  let cursor: ChildNode | null = parent.firstChild;
  for (const el of next.values()) {
    if (cursor === el) {
      cursor = el.nextSibling;
    } else {
      parent.insertBefore(el, cursor);
    }
  }
  // Anything left after the keyed elements is not ours to keep.
  while (cursor) {
    const n: ChildNode | null = cursor.nextSibling;
    cursor.remove();
    cursor = n;
  }
  keyed.set(parent, next);
}
