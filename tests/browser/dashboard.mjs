// What the embed scenario needs around kterm, as Kubeflow has it: an authenticating proxy in
// front of kterm that adds the user's identity header to every request (WebSocket upgrades
// too), and a dashboard page served from another origin that embeds kterm with embed.js.

import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';

/**
 * An HTTP proxy on 127.0.0.1:0 to `target` that sets `header: value` on every request it
 * forwards (and drops that header from the client). Returns {url, close()}.
 */
export async function startAuthProxy(target, header, value) {
  const { hostname, port } = new URL(target);
  const sockets = new Set();
  const headersOf = (req) => {
    const headers = { ...req.headers };
    delete headers[header.toLowerCase()];
    headers[header.toLowerCase()] = value;
    return headers;
  };
  const server = http.createServer((req, res) => {
    const upstream = http.request(
      { host: hostname, port, method: req.method, path: req.url, headers: headersOf(req) },
      (answer) => {
        res.writeHead(answer.statusCode, answer.rawHeaders);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  server.on('upgrade', (req, client, head) => {
    const upstream = net.connect({ host: hostname, port: Number(port) }, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (const [name, v] of Object.entries(headersOf(req))) lines.push(`${name}: ${v}`);
      upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length) upstream.write(head);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => { client.destroy(); upstream.destroy(); });
      s.on('close', () => sockets.delete(s));
    }
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * The example dashboard (assets/public/embed-example.html) served on 127.0.0.1:`port` (0: any),
 * with its embed.js loaded from `kterm` (another origin). Returns {url, close()}.
 */
export async function startDashboard(kterm, port = 0) {
  const publicDir = new URL('../../assets/public/', import.meta.url);
  const page = fs.readFileSync(new URL('embed-example.html', publicDir), 'utf8')
    .replace('src="embed.js"', `src="${kterm}/embed.js"`);
  const style = fs.readFileSync(new URL('embed-example.css', publicDir));
  const server = http.createServer((req, res) => {
    if (req.url === '/' || req.url.startsWith('/?')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page);
    } else if (req.url === '/embed-example.css') {
      res.writeHead(200, { 'content-type': 'text/css' });
      res.end(style);
    } else if (req.url === '/favicon.ico') {
      res.writeHead(204);
      res.end();
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}
