// Reads the server name (SNI) from a TLS ClientHello without terminating TLS (RFC 8446 §4.1.2,
// RFC 6066 §3). Returns 'incomplete' until the whole handshake record has arrived.
export type HelloResult = { kind: 'not-tls' } | { kind: 'incomplete' } | { kind: 'tls'; serverName: string | null };

const HANDSHAKE = 0x16;
const CLIENT_HELLO = 0x01;
const EXT_SERVER_NAME = 0x0000;

export function readClientHello(buf: Buffer): HelloResult {
  if (buf.length < 1) return { kind: 'incomplete' };
  if (buf[0] !== HANDSHAKE) return { kind: 'not-tls' };
  if (buf.length < 5) return { kind: 'incomplete' };
  const recordLength = buf.readUInt16BE(3);
  if (buf.length < 5 + recordLength) return { kind: 'incomplete' };
  try {
    return { kind: 'tls', serverName: serverName(buf.subarray(5, 5 + recordLength)) };
  } catch {
    return { kind: 'tls', serverName: null };
  }
}

function serverName(hs: Buffer): string | null {
  if (hs[0] !== CLIENT_HELLO) return null;
  let p = 4; // type(1) + length(3)
  p += 2 + 32; // legacy_version + random
  p += 1 + hs[p]!; // session id
  p += 2 + hs.readUInt16BE(p); // cipher suites
  p += 1 + hs[p]!; // compression methods
  if (p + 2 > hs.length) return null;
  const end = p + 2 + hs.readUInt16BE(p);
  p += 2;
  while (p + 4 <= end) {
    const type = hs.readUInt16BE(p);
    const len = hs.readUInt16BE(p + 2);
    p += 4;
    if (type === EXT_SERVER_NAME) {
      // server_name_list: length(2), then entries of type(1) length(2) name
      let q = p + 2;
      while (q + 3 <= p + len) {
        const nameType = hs[q]!;
        const nameLen = hs.readUInt16BE(q + 1);
        if (nameType === 0) return hs.subarray(q + 3, q + 3 + nameLen).toString('ascii');
        q += 3 + nameLen;
      }
      return null;
    }
    p += len;
  }
  return null;
}
