// Sends events to a forward receiver with the npm client @fluent-org/logger, then exits.
// Usage: node send.js '<json>' with {port, mode, ack, sharedKey?, clientHostname?, tag, events: [{record, time: [sec, nsec]}]}
// Prints {"sent": N} on success; exits 1 with the error on stderr otherwise (e.g. no ack, handshake refused).
"use strict";
const { FluentClient, EventTime } = require("@fluent-org/logger");

async function main() {
  const cfg = JSON.parse(process.argv[2]);
  const options = {
    eventMode: cfg.mode,
    socket: { host: "127.0.0.1", port: cfg.port, timeout: 5000, disableReconnect: true },
    disconnect: { waitForPending: true, waitForPendingDelay: 5000, socketDisconnectDelay: 0 },
  };
  if (cfg.ack) options.ack = { ackTimeout: 5000 };
  if (cfg.sharedKey) options.security = { clientHostname: cfg.clientHostname, sharedKey: cfg.sharedKey };
  const client = new FluentClient(null, options);
  // A refused handshake closes the socket for good without rejecting pending emits: fail loudly.
  const failed = new Promise((_, reject) => client.socketOn("error", reject));
  await client.connect();
  const sent = cfg.events.map((e) => client.emit(cfg.tag, e.record, new EventTime(e.time[0], e.time[1])));
  await Promise.race([Promise.all(sent), failed]);
  await client.disconnect();
  process.stdout.write(JSON.stringify({ sent: sent.length }) + "\n");
  done = true;
}

let done = false;
process.on("beforeExit", () => {
  if (!done) {
    process.stderr.write("gave up: nothing left to wait for, but the events were not all sent\n");
    process.exit(1);
  }
});

main().catch((err) => {
  process.stderr.write(`${err && err.name}: ${err && err.message}\n`);
  process.exit(1);
});
