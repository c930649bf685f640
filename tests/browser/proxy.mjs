// A TCP proxy on 127.0.0.1:0 in front of kterm, so a scenario can cut the browser's connections
// the way a network does: every proxied socket destroyed at once, and new ones refused while
// the proxy is held.

import net from 'node:net';

/** Starts a proxy to `target` (a URL); returns {url, cut(), hold(), release(), close()}. */
export async function startProxy(target) {
  const { hostname, port } = new URL(target);
  const sockets = new Set();
  let held = false;
  const server = net.createServer((client) => {
    if (held) {
      client.destroy();
      return;
    }
    const upstream = net.connect({ host: hostname, port: Number(port) });
    sockets.add(client);
    sockets.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    /** How many sockets (both sides) are open now. */
    open: () => sockets.size,
    /** Destroys every proxied connection. */
    cut() {
      const n = sockets.size;
      for (const socket of sockets) socket.destroy();
      sockets.clear();
      return n;
    },
    /** Refuses new connections until release(). */
    hold() { held = true; },
    release() { held = false; },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
