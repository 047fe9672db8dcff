// ULIDs (https://github.com/ulid/spec): the client's clientMessageId, the engine's
// idempotency key. Monotonic within one process: ids made in the same millisecond
// still sort in the order they were made.

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

let lastTime = -1;
let lastRandom: number[] = [];

function randomDigits(): number[] {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b & 31);
}

/** A new ULID: 10 characters of Unix ms time, then 16 of randomness (Crockford base 32). */
export function ulid(now: number = Date.now()): string {
  let random: number[];
  if (now <= lastTime) {
    // Same (or an earlier) millisecond: the previous randomness plus one keeps the order.
    now = lastTime;
    random = lastRandom.slice();
    let i = random.length - 1;
    while (i >= 0 && random[i] === 31) {
      random[i] = 0;
      i -= 1;
    }
    if (i < 0) throw new Error("ulid: randomness overflow within one millisecond");
    random[i] = (random[i] ?? 0) + 1;
  } else {
    random = randomDigits();
  }
  lastTime = now;
  lastRandom = random;
  let time = "";
  let t = now;
  for (let i = 0; i < 10; i += 1) {
    time = ALPHABET.charAt(t % 32) + time;
    t = Math.floor(t / 32);
  }
  return time + random.map((d) => ALPHABET.charAt(d)).join("");
}
