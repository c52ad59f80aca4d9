// ws-echo.js: the peer of madoguchi-hub-load's capacity benchmark — a WebSocket echo server on
// Node.js and the `ws` library: every text frame comes back as it came. No store, no bot.
//
//   node bench/peers/ws-echo.js [--port N]     (N = 0: any free port; loopback only)
//
// Prints "ws-echo: listening on ws://127.0.0.1:PORT" once it listens; SIGTERM or SIGINT stops it.
// `ws` comes from Debian's node-ws (/usr/share/nodejs), or from bench/peers/node_modules
// (`npm install ws` there, by hand: nothing is downloaded at build or test time).
'use strict';

const path = require('path');

function loadWs() {
  const places = [
    'ws',                                              // NODE_PATH, node_modules beside this file
    path.join(__dirname, 'node_modules', 'ws'),
    '/usr/share/nodejs/ws',                            // Debian: node-ws
    '/usr/lib/nodejs/ws',
  ];
  for (const p of places) {
    try {
      return require(p);
    } catch (e) {
      if (e.code !== 'MODULE_NOT_FOUND') throw e;
    }
  }
  console.error('ws-echo: the `ws` module is missing: apt-get install node-ws, or npm install ws in ' + __dirname);
  process.exit(77);
}

const { WebSocketServer } = loadWs();

let port = 0;
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === '--port' && i + 1 < process.argv.length) port = Number(process.argv[++i]);
  else {
    console.error('usage: node ws-echo.js [--port N]');
    process.exit(2);
  }
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  backlog: 4096,              // as libwebsockets (SOMAXCONN)
  maxPayload: 64 * 1024,      // as the hub's frame limit
  perMessageDeflate: false,
  clientTracking: false,
});

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.on('listening', () => {
  console.log(`ws-echo: listening on ws://127.0.0.1:${wss.address().port}`);
});
wss.on('error', (e) => {
  console.error('ws-echo: ' + e.message);
  process.exit(1);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
