// Loaded into the Firebase CLI by scripts/emulators (NODE_OPTIONS=--require).
//
// The functions emulator forwards each invocation to the function's Python
// worker (gunicorn, which closes an idle kept-alive connection after 2 s)
// through Node's global agent (which keeps idle connections for 5 s). A request
// sent on a connection the worker has just closed fails with "socket hang up":
// the emulator answers 500 to a callable and drops a trigger event for good.
// One connection per request removes the race; on loopback it costs nothing.
const http = require("http");
http.globalAgent = new http.Agent({ keepAlive: false });
