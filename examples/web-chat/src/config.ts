// The runtime configuration: where the emulators are and who the demo users are.
// server.mjs serves it as /config.json (scripts/web and the browser tests write it).

export interface DemoAccount {
  readonly email: string;
  readonly password: string;
  readonly name: string;
  /** Said beside the account (Fay: not verified 18+, her messages are refused). */
  readonly note?: string;
}

export interface AppConfig {
  readonly projectId: string;
  readonly apiKey: string;
  /** "http://127.0.0.1:9099" */
  readonly authUrl: string;
  readonly firestoreHost: string;
  readonly firestorePort: number;
  readonly functionsHost: string;
  readonly functionsPort: number;
  readonly region: string;
  /** The people to sign in as, one button each. */
  readonly accounts: readonly DemoAccount[];
  /** Other accounts that exist (the big group's members), said in words. */
  readonly otherAccounts?: string;
}

function isConfig(value: unknown): value is AppConfig {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v["projectId"] === "string" && typeof v["authUrl"] === "string" &&
    typeof v["firestorePort"] === "number" && typeof v["functionsPort"] === "number" &&
    Array.isArray(v["accounts"]);
}

export async function loadConfig(): Promise<AppConfig> {
  const response = await fetch("/config.json", { cache: "no-cache" });
  if (!response.ok) throw new Error(`/config.json: ${response.status}`);
  const value: unknown = await response.json();
  if (!isConfig(value)) throw new Error("/config.json is not the app's configuration");
  return value;
}
