// Needs the emulator suite's environment (scripts/emulators exec); clears its data once.
export default async function setup(): Promise<void> {
  const names = ["FIRESTORE_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST", "PACK427_FUNCTIONS_URL", "PACK427_PROJECT"];
  const missing = names.filter((n) => !process.env[n]);
  if (missing.length) {
    throw new Error(`the client tests need the emulator suite (missing ${missing.join(", ")}): run scripts/test`);
  }
  const project = process.env["PACK427_PROJECT"];
  const firestore = await fetch(
    `http://${process.env["FIRESTORE_EMULATOR_HOST"]}/emulator/v1/projects/${project}/databases/(default)/documents`,
    { method: "DELETE" },
  );
  if (!firestore.ok) throw new Error(`clearing Firestore: ${firestore.status}`);
  const auth = await fetch(`http://${process.env["FIREBASE_AUTH_EMULATOR_HOST"]}/emulator/v1/projects/${project}/accounts`, {
    method: "DELETE",
  });
  if (!auth.ok) throw new Error(`clearing Auth: ${auth.status}`);
}
