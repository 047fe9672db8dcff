import { useEffect, useMemo, useState } from "react";
import { onAuthStateChanged, signOut, type User } from "firebase/auth";
import { browserConnectivity, indexedDbStorage, ulid } from "@pack427/client";
import { Pack427Provider } from "@pack427/client/react";
import type { AppConfig } from "./config";
import type { Firebase } from "./firebase";
import { SignIn } from "./SignIn";
import { ChatApp } from "./ChatApp";
import { displayName } from "./names";

/** This tab's own device: its storage survives reloads (sessionStorage), each tab is a device. */
function tabId(): string {
  const key = "pack427-web-chat.tab";
  let id = sessionStorage.getItem(key);
  if (!id) {
    id = ulid();
    sessionStorage.setItem(key, id);
  }
  return id;
}

export function App({ config, firebase }: { config: AppConfig; firebase: Firebase }) {
  const [user, setUser] = useState<User | null | undefined>(undefined);
  useEffect(() => onAuthStateChanged(firebase.auth, setUser), [firebase.auth]);

  if (user === undefined) return <p className="loading" role="status">Loading…</p>;
  if (user === null) return <SignIn auth={firebase.auth} config={config} />;
  return (
    <SignedIn key={user.uid} user={user} firebase={firebase} onSignOut={() => void signOut(firebase.auth)} />
  );
}

function SignedIn({ user, firebase, onSignOut }: { user: User; firebase: Firebase; onSignOut: () => void }) {
  const tab = useMemo(tabId, []);
  const storage = useMemo(() => indexedDbStorage(`pack427-web-chat-${tab}`), [tab]);
  const connectivity = useMemo(() => browserConnectivity(), []);
  return (
    <Pack427Provider
      app={firebase.app}
      storage={storage}
      connectivity={connectivity}
      platform="web"
      appVersion="web-chat-0.1.0"
      displayName={displayName}
      onError={(error) => console.warn("pack427:", error)}
    >
      <ChatApp user={user} db={firebase.db} onSignOut={onSignOut} />
    </Pack427Provider>
  );
}
