// tlscerts.mjs — a test certificate authority and server certificates made with Debian's `openssl`
// CLI in a temporary directory, for the TLS tests (tests/e2e/tls.test.mjs, tests/web/tls.test.mjs)
// and bench/tls_idle.mjs. The clients trust the CA (`ca:`), or pin the server key's SPKI hash;
// nothing disables certificate checks.
//
//   const pki = makeCa()                    -> {dir, ca (PEM text), caFile, caKey}
//   serverCert(pki, {name, serial, hosts})  -> {cert, key (files), serial, cn, spki (base64 sha256)}
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

function openssl(args, cwd) {
  return execFileSync('openssl', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** a new CA in a new temporary directory (removed by removeCa) */
export function makeCa(subject = '/CN=iyagi test CA') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iyagi-tls-'));
  openssl(['req', '-x509', ...EC, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', subject,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  return { dir, caFile: path.join(dir, 'ca.pem'), caKey: path.join(dir, 'ca.key'), ca: fs.readFileSync(path.join(dir, 'ca.pem'), 'utf8') };
}

export function removeCa(pki) {
  if (pki?.dir) fs.rmSync(pki.dir, { recursive: true, force: true });
}

/** base64 SHA-256 of a certificate's SubjectPublicKeyInfo (what Chromium's SPKI pin list takes) */
export function spkiHash(certPem) {
  const der = new crypto.X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  return crypto.createHash('sha256').update(der).digest('base64');
}

/**
 * A server certificate signed by the CA for `hosts` (subjectAltName), a fresh P-256 key; files
 * `${name}.pem` and `${name}.key` in the CA's directory. serial: a decimal number.
 */
export function serverCert(pki, { name = 'server', serial = 1000, cn = `iyagi test server ${serial}`, hosts = ['127.0.0.1', 'localhost'] } = {}) {
  const san = hosts.map((h) => (/^[0-9.]+$|:/.test(h) ? `IP:${h}` : `DNS:${h}`)).join(',');
  const ext = path.join(pki.dir, `${name}.ext`);
  fs.writeFileSync(ext, `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n`);
  openssl(['req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], pki.dir);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', String(serial),
    '-days', '2', '-out', `${name}.pem`, '-extfile', ext], pki.dir);
  const cert = path.join(pki.dir, `${name}.pem`);
  return { cert, key: path.join(pki.dir, `${name}.key`), serial, cn, spki: spkiHash(fs.readFileSync(cert, 'utf8')) };
}
