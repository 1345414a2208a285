// Entry point: decide between the start screen, the invite screen and the
// app, and switch between them as the session comes and goes.

import "./styles.css";
import { api, ApiError, setUnauthenticatedHandler } from "./api";
import { App } from "./app";
import type { Me } from "./types";
import { renderJoin, renderLanding } from "./views/auth";
import { Shell } from "./views/shell";

const root = document.getElementById("app") as HTMLElement;
let app: App | null = null;

function inviteToken(): string | null {
  if (location.pathname.replace(/\/+$/, "") !== "/join") return null;
  const raw = location.hash.replace(/^#/, "");
  if (!raw) return null;
  try {
    return decodeURIComponent(raw).trim() || null;
  } catch {
    return raw.trim() || null;
  }
}

function stopApp(): void {
  setUnauthenticatedHandler(() => {});
  if (app) {
    app.stop();
    app = null;
  }
}

function showLanding(): void {
  stopApp();
  if (location.pathname !== "/" || location.hash) window.history.replaceState(null, "", "/");
  renderLanding(root, enter);
}

/** enter starts the app for a session that was just created, joined or found. */
function enter(me: Me): void {
  stopApp();
  // The invite token lives only in the fragment; drop it from the address.
  if (location.pathname.replace(/\/+$/, "") === "/join" || location.hash) {
    window.history.replaceState(null, "", "/");
  }
  let scheduled = false;
  const shell: { current: Shell | null } = { current: null };
  const render = () => {
    if (scheduled) return;
    scheduled = true;
    queueMicrotask(() => {
      scheduled = false;
      shell.current?.update();
    });
  };
  const started = new App(me, render, showLanding);
  app = started;
  shell.current = new Shell(started);
  root.replaceChildren(shell.current.el);
  setUnauthenticatedHandler(() => {
    if (app === started) showLanding();
  });
  started.start();
  shell.current.update();
}

async function boot(): Promise<void> {
  const token = inviteToken();
  let me: Me | null = null;
  try {
    me = await api.me();
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) {
      renderBootError(e instanceof ApiError ? e.message : "Could not reach the server.");
      return;
    }
  }
  if (token) {
    await renderJoin(root, token, me, enter);
    return;
  }
  if (me) enter(me);
  else showLanding();
}

function renderBootError(message: string): void {
  root.replaceChildren();
  const main = document.createElement("main");
  main.className = "auth";
  const h1 = document.createElement("h1");
  h1.className = "wordmark";
  h1.textContent = "handoff";
  const p = document.createElement("p");
  p.className = "card auth-card";
  p.setAttribute("role", "alert");
  p.textContent = `${message} Retrying...`;
  main.append(h1, p);
  root.append(main);
  setTimeout(() => void boot(), 2000);
}

void boot();
