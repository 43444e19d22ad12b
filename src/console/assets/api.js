// The console's one way to the server: the ECS JSON API (POST / with X-Amz-Target), ECS's
// actions and wasmgate's WasmgateV1.*, signed with SigV4 when a key is held. The key lives in
// sessionStorage: gone when the tab closes, never sent anywhere but in signatures.
import { sign } from "./sigv4.js";

const ECS = "AmazonEC2ContainerServiceV20141113.";
const KEY = "wasmgate.console.key";

/// An error answered by the API, in its own words: `code` is ECS's error type.
export class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
  toString() {
    return `${this.code}: ${this.message}`;
  }
}

export function heldKey() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || "null");
  } catch {
    return null;
  }
}

export function holdKey(key) {
  if (key) sessionStorage.setItem(KEY, JSON.stringify(key));
  else sessionStorage.removeItem(KEY);
}

/// Whether an error says the server wants signed requests (or refused a signature).
export function isAuthError(error) {
  return error instanceof ApiError &&
    ["UnrecognizedClientException", "InvalidSignatureException", "MissingAuthenticationTokenException"]
      .includes(error.code);
}

/// Calls `action` (an ECS action, or `WasmgateV1.X`) with `body`; resolves to the answer,
/// rejects with an ApiError.
export async function call(action, body = {}, key = heldKey()) {
  const target = action.startsWith("WasmgateV1.") ? action : ECS + action;
  const text = JSON.stringify(body);
  const headers = {
    "content-type": "application/x-amz-json-1.1",
    "x-amz-target": target,
  };
  const signed = key ? await sign(key, location.host, headers, text) : {};
  let response;
  try {
    response = await fetch("/", { method: "POST", headers: { ...headers, ...signed }, body: text });
  } catch (error) {
    throw new ApiError("NetworkError", `the server did not answer: ${error.message}`);
  }
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const code = (answer.__type || response.headers.get("x-amzn-errortype") || `HTTP ${response.status}`)
      .split("#").pop();
    throw new ApiError(code, answer.message || answer.Message || response.statusText);
  }
  return answer;
}

/// DescribeX in chunks of `size` (ECS caps DescribeServices at 10, DescribeTasks at 100).
export async function describeAll(action, member, items, extra, field, size) {
  const out = [];
  for (let i = 0; i < items.length; i += size) {
    const answer = await call(action, { ...extra, [member]: items.slice(i, i + size) });
    out.push(...(answer[field] || []));
  }
  return out;
}

/// Every page of a List call.
export async function listAll(action, body, field) {
  const out = [];
  let nextToken;
  do {
    const answer = await call(action, nextToken ? { ...body, nextToken } : body);
    out.push(...(answer[field] || []));
    nextToken = answer.nextToken;
  } while (nextToken);
  return out;
}
