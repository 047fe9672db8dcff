// Fields of the documents the listeners read, taken defensively: a Firestore document is
// untyped, and a field of the wrong type reads as missing rather than breaking a listener.
import { Timestamp } from "firebase/firestore";

/** A time as Unix ms: a Firestore Timestamp, a number, a Date or a date string; else null. */
export function millis(value: unknown): number | null {
  if (value instanceof Timestamp) return Math.floor(value.toMillis());
  if (typeof value === "number") return value;
  if (value instanceof Date) return value.getTime();
  if (typeof value === "string") {
    const parsed = Date.parse(value);
    return Number.isNaN(parsed) ? null : parsed;
  }
  return null;
}

export function str(value: unknown): string | null {
  return typeof value === "string" ? value : null;
}
