// HTTP JSON client for the edge's /api routes. Every failure becomes an
// ApiError whose message is a sentence fit for the screen: the server's own
// error.message when it sent one, a plain description otherwise.

import type { Draft, DraftSummary, Me, Member, Operation, Product, Team } from "./types";

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** The whole error object, for extra fields such as current_revision or operation. */
  readonly detail: Record<string, unknown>;

  constructor(status: number, code: string, message: string, detail: Record<string, unknown> = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

type UnauthenticatedHandler = () => void;
let onUnauthenticated: UnauthenticatedHandler = () => {};

/** setUnauthenticatedHandler registers what happens when any request answers 401. */
export function setUnauthenticatedHandler(fn: UnauthenticatedHandler): void {
  onUnauthenticated = fn;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function plainStatusMessage(status: number): string {
  switch (status) {
    case 401:
      return "Your session has ended. Please sign in again.";
    case 403:
      return "The server refused this request.";
    case 404:
      return "That was not found.";
    case 413:
      return "That is too large for the server to accept.";
    case 429:
      return "Too many requests. Please wait a moment and try again.";
    case 502:
    case 503:
    case 504:
      return "The server is unavailable right now. Nothing was changed; please try again shortly.";
    default:
      return status >= 500
        ? "Something went wrong on the server. Please try again."
        : `The request failed (HTTP ${status}).`;
  }
}

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = {
    method,
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  };
  if (body !== undefined) {
    init.headers = { Accept: "application/json", "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  let res: Response;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, "network", "Could not reach the server. Check your connection and try again.");
  }

  const text = await res.text().catch(() => "");
  let data: unknown = undefined;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = undefined;
    }
  }

  if (!res.ok) {
    const err = isRecord(data) && isRecord(data.error) ? data.error : {};
    const code = typeof err.code === "string" ? err.code : `http_${res.status}`;
    const message =
      typeof err.message === "string" && err.message.trim() !== ""
        ? err.message
        : plainStatusMessage(res.status);
    if (res.status === 401) onUnauthenticated();
    throw new ApiError(res.status, code, message, err);
  }
  return data as T;
}

export interface TeamCreated {
  team: Team;
  member: Member;
  invite_token: string;
}

export interface Joined {
  team: Team;
  member: Member;
}

export const api = {
  me: () => request<Me>("GET", "/api/me"),
  createTeam: (name: string, displayName: string) =>
    request<TeamCreated>("POST", "/api/teams", { name, display_name: displayName }),
  lookupInvite: (token: string) =>
    request<{ team: Team }>("POST", "/api/invites/lookup", { invite_token: token }),
  join: (token: string, displayName: string) =>
    request<Joined>("POST", "/api/join", { invite_token: token, display_name: displayName }),
  logout: () => request<void>("POST", "/api/logout"),

  catalog: () => request<{ products: Product[] }>("GET", "/api/catalog"),

  drafts: () => request<{ drafts: DraftSummary[] }>("GET", "/api/drafts"),
  createDraft: (title: string) => request<Draft>("POST", "/api/drafts", { title }),
  draft: (id: string) => request<Draft>("GET", `/api/drafts/${encodeURIComponent(id)}`),
  submit: (id: string, revision: number) =>
    request<{ operation: Operation }>("POST", `/api/drafts/${encodeURIComponent(id)}/submit`, {
      revision,
    }),

  operations: () => request<{ operations: Operation[] }>("GET", "/api/operations"),
  retry: (id: string) =>
    request<unknown>("POST", `/api/operations/${encodeURIComponent(id)}/retry`, {}),
};

/** operationFrom digs an operation out of an answer that may wrap it or be it. */
export function operationFrom(body: unknown): Operation | null {
  if (!isRecord(body)) return null;
  const candidate = isRecord(body.operation) ? body.operation : body;
  if (typeof candidate.id === "string" && typeof candidate.seq === "number") {
    return candidate as unknown as Operation;
  }
  return null;
}

/** errorMessage turns anything thrown into a sentence for the screen. */
export function errorMessage(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof Error && e.message) return e.message;
  return "Something went wrong. Please try again.";
}
