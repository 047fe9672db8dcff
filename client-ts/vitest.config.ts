import { defineConfig } from "vitest/config";

// Run by scripts/test under the emulator suite (scripts/emulators exec), after pytest.
// One file at a time: the suite's function workers are shared with everything else on a 2-core machine.
export default defineConfig({
  test: {
    globalSetup: ["./test/global-setup.ts"],
    fileParallelism: false,
    testTimeout: 240_000,
    hookTimeout: 120_000,
    projects: [
      {
        extends: true,
        test: { name: "core", environment: "node", include: ["test/core/**/*.test.ts"] },
      },
      {
        extends: true,
        test: { name: "hooks", environment: "happy-dom", include: ["test/hooks/**/*.test.tsx"] },
      },
    ],
  },
});
