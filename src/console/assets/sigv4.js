// AWS Signature Version 4 in the browser (WebCrypto's SHA-256 and HMAC-SHA256), exactly as
// src/api/sigv4.rs checks it: POST /, every header given plus host and x-amz-date signed.
const encoder = new TextEncoder();

const hex = (buffer) =>
  Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");

async function sha256Hex(text) {
  return hex(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

async function hmac(key, text) {
  const raw = typeof key === "string" ? encoder.encode(key) : key;
  const imported = await crypto.subtle.importKey(
    "raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return crypto.subtle.sign("HMAC", imported, encoder.encode(text));
}

/// `20261202T163000Z` for a Date.
export function amzDate(now) {
  return now.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

/// The x-amz-date and authorization headers for a POST / with `headers` (lowercase names)
/// and `body`, signed by `key` ({accessKeyId, secretAccessKey, region}) for service ecs.
export async function sign(key, host, headers, body, now = new Date()) {
  if (!globalThis.crypto?.subtle) {
    throw new Error("this page is not a secure context, so the browser offers no WebCrypto " +
      "to sign with: open the console over https, or on localhost / 127.0.0.1");
  }
  const date = amzDate(now);
  const day = date.slice(0, 8);
  const all = { ...headers, host, "x-amz-date": date };
  const names = Object.keys(all).sort();
  const canonicalHeaders = names
    .map((name) => `${name}:${String(all[name]).trim().replace(/\s+/g, " ")}\n`)
    .join("");
  const signedHeaders = names.join(";");
  const canonical = ["POST", "/", "", canonicalHeaders, signedHeaders, await sha256Hex(body)]
    .join("\n");
  const scope = `${day}/${key.region}/ecs/aws4_request`;
  const toSign = `AWS4-HMAC-SHA256\n${date}\n${scope}\n${await sha256Hex(canonical)}`;
  let signing = await hmac(`AWS4${key.secretAccessKey}`, day);
  for (const part of [key.region, "ecs", "aws4_request"]) signing = await hmac(signing, part);
  const signature = hex(await hmac(signing, toSign));
  return {
    "x-amz-date": date,
    authorization: `AWS4-HMAC-SHA256 Credential=${key.accessKeyId}/${scope}, ` +
      `SignedHeaders=${signedHeaders}, Signature=${signature}`,
  };
}
