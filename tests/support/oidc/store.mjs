// Token storage for the test provider: kept in memory, written to a file when the process is
// told to stop (SIGTERM) and read back at start. A real authorization server keeps its tokens
// across a restart, so "stop the provider, start it again" must not revoke everything it issued;
// a crash (SIGKILL) loses what was not saved, as it would with an in-memory store.
//
// oidc-provider's own in-memory adapter cannot be saved (its storage is private to the module),
// hence this small one. It implements the adapter interface documented by oidc-provider
// (upsert/find/findByUid/findByUserCode/consume/destroy/revokeByGrantId).

import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';

const entries = new Map(); // "Model:id" -> { payload, expiresAt (ms epoch or null) }

function live(entry) {
  return entry && (entry.expiresAt === null || entry.expiresAt > Date.now());
}

export function load(file) {
  if (!file || !existsSync(file)) return;
  for (const [key, entry] of Object.entries(JSON.parse(readFileSync(file, 'utf8')))) {
    if (live(entry)) entries.set(key, entry);
  }
}

export function save(file) {
  if (!file) return;
  const kept = Object.fromEntries([...entries].filter(([, entry]) => live(entry)));
  // Write then rename: a half-written file must never be read back as the store.
  writeFileSync(`${file}.tmp`, JSON.stringify(kept));
  renameSync(`${file}.tmp`, file);
}

export class FileBackedAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : null;
    entries.set(this.key(id), { payload, expiresAt });
  }

  async find(id) {
    const entry = entries.get(this.key(id));
    return live(entry) ? entry.payload : undefined;
  }

  async findBy(field, value) {
    for (const [key, entry] of entries) {
      if (key.startsWith(`${this.model}:`) && live(entry) && entry.payload[field] === value) {
        return entry.payload;
      }
    }
    return undefined;
  }

  findByUid(uid) {
    return this.findBy('uid', uid);
  }

  findByUserCode(userCode) {
    return this.findBy('userCode', userCode);
  }

  async consume(id) {
    const entry = entries.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    entries.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const [key, entry] of entries) {
      if (entry.payload.grantId === grantId) entries.delete(key);
    }
  }
}
