// Loaded into the Firebase CLI by scripts/emulators (NODE_OPTIONS=--require).
// Two changes to how the emulator suite runs on these machines; neither changes
// what an emulator answers.

// 1. One connection per request to the Python function workers.
// The functions emulator forwards each invocation to the function's Python
// worker (gunicorn, which closes an idle kept-alive connection after 2 s)
// through Node's global agent (which keeps idle connections for 5 s). A request
// sent on a connection the worker has just closed fails with "socket hang up":
// the emulator answers 500 to a callable and drops a trigger event for good.
// One connection per request removes the race; on loopback it costs nothing.
const http = require("http");
http.globalAgent = new http.Agent({ keepAlive: false });

// 2. The Auth emulator compiles its request validators when first used.
// At start it hands its whole REST API (hundreds of operations) to exegesis,
// which compiles a JSON-schema validator for every one of them up front:
// 80 s of CPU on a 2-core machine here, during which the suite is not ready.
// exegesis's own lazyCompileValidationSchemas option compiles each on its first
// request instead; the validation is the same.
try {
  const cli = require.resolve("firebase-tools/package.json", { paths: [process.cwd()] });
  const options = require(require.resolve("exegesis/lib/options", { paths: [cli] }));
  const compile = options.compileOptions;
  options.compileOptions = (given = {}) =>
    compile({ lazyCompileValidationSchemas: true, ...given });
} catch {
  // Another firebase-tools layout: the validators are compiled up front, as usual.
}
