// Display names of the people in the user's chats (from each chat's memberNames),
// for typing indicators ("Bea is typing").
const names = new Map<string, string>();

export function learnNames(memberNames: Readonly<Record<string, unknown>>): void {
  for (const [uid, name] of Object.entries(memberNames)) if (typeof name === "string") names.set(uid, name);
}

export function displayName(uid: string): string | undefined {
  return names.get(uid);
}
