import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App";
import { loadConfig } from "./config";
import { startFirebase } from "./firebase";
import { registerOfflineShell } from "./offline-shell";
import "./styles.css";

const root = createRoot(document.getElementById("root") as HTMLElement);

loadConfig()
  .then((config) => {
    const firebase = startFirebase(config);
    root.render(
      <StrictMode>
        <App config={config} firebase={firebase} />
      </StrictMode>,
    );
  })
  .catch((error: unknown) => {
    root.render(
      <main className="fatal" role="alert">
        <h1>The app could not start</h1>
        <p>{error instanceof Error ? error.message : String(error)}</p>
        <p>Start it with <code>scripts/web</code>, which serves its configuration.</p>
      </main>,
    );
  });

registerOfflineShell();
