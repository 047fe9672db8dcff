// The Firebase app on the emulator suite: Auth (one person per tab), Firestore with
// a persistent cache (the chat list is there after a reload while offline), Functions.
import { initializeApp, type FirebaseApp } from "firebase/app";
import { browserSessionPersistence, connectAuthEmulator, initializeAuth, type Auth } from "firebase/auth";
import {
  connectFirestoreEmulator,
  initializeFirestore,
  persistentLocalCache,
  persistentMultipleTabManager,
  type Firestore,
} from "firebase/firestore";
import { connectFunctionsEmulator, getFunctions } from "firebase/functions";
import type { AppConfig } from "./config";

export interface Firebase {
  readonly app: FirebaseApp;
  readonly auth: Auth;
  readonly db: Firestore;
}

export function startFirebase(config: AppConfig): Firebase {
  const app = initializeApp({ apiKey: config.apiKey, projectId: config.projectId, authDomain: `${config.projectId}.firebaseapp.com` });
  // Session persistence: each tab (window) signs in on its own, so two windows are two people;
  // a reload keeps the tab's user.
  const auth = initializeAuth(app, { persistence: browserSessionPersistence });
  connectAuthEmulator(auth, config.authUrl, { disableWarnings: true });
  const db = initializeFirestore(app, { localCache: persistentLocalCache({ tabManager: persistentMultipleTabManager() }) });
  connectFirestoreEmulator(db, config.firestoreHost, config.firestorePort);
  connectFunctionsEmulator(getFunctions(app, config.region), config.functionsHost, config.functionsPort);
  return { app, auth, db };
}
