import { useState, type FormEvent } from "react";
import { signInWithEmailAndPassword, type Auth } from "firebase/auth";
import type { AppConfig } from "./config";

export function SignIn({ auth, config }: { auth: Auth; config: AppConfig }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const signIn = async (as: string, secret: string) => {
    setBusy(true);
    setError(null);
    try {
      await signInWithEmailAndPassword(auth, as, secret);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
      setBusy(false);
    }
  };
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void signIn(email, password);
  };

  return (
    <main className="sign-in">
      <h1>PACK 427 chat</h1>
      <p>Sign in as one of the demo people. Open a second window (or a private one) and sign in as someone else: two windows are two people.</p>
      <ul className="accounts" aria-label="Demo accounts">
        {config.accounts.map((a) => (
          <li key={a.email}>
            <button type="button" disabled={busy} onClick={() => void signIn(a.email, a.password)}>
              Sign in as {a.name}
            </button>
            <span className="muted">{a.email}{a.note && ` (${a.note})`}</span>
          </li>
        ))}
      </ul>
      <form onSubmit={submit} aria-label="Sign in with email">
        <h2>Or with an email and password</h2>
        {config.otherAccounts && <p className="muted">{config.otherAccounts}</p>}
        <label>
          Email
          <input type="email" autoComplete="username" value={email} onChange={(e) => setEmail(e.target.value)} required />
        </label>
        <label>
          Password
          <input type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required />
        </label>
        <button type="submit" disabled={busy}>Sign in</button>
      </form>
      {error && <p role="alert" className="error">{error}</p>}
    </main>
  );
}
