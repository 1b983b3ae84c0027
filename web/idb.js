// idb.js — a small promise wrapper over IndexedDB (no library): opening a database with its
// upgrade, one transaction at a time, and deleting a database. It knows nothing of iyagi's data
// (saved.js does). Every function rejects on an error or an abort: callers decide what a failed
// read or write means.

/** a request's result */
export function req(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

/**
 * Opens database `name` at `version`, creating or upgrading it with upgrade(db, oldVersion).
 * Rejects after `ms` when the open does not finish (another tab holding an older version open, a
 * browser with storage switched off that never answers): the app then runs without what was saved
 * rather than waiting. A connection that arrives after that is closed at once, so that it can
 * never block a later delete.
 */
export function openDb(name, version, upgrade, ms = 3000) {
  return new Promise((resolve, reject) => {
    let r;
    try { r = indexedDB.open(name, version); } catch (e) { reject(e); return; }
    let late = false;
    const timer = setTimeout(() => { late = true; reject(new Error(`opening ${name} timed out`)); }, ms);
    r.onupgradeneeded = (ev) => upgrade(r.result, ev.oldVersion);
    r.onsuccess = () => {
      clearTimeout(timer);
      if (late) { r.result.close(); return; }
      resolve(r.result);
    };
    r.onerror = () => { clearTimeout(timer); reject(r.error); };
  });
}

/**
 * One transaction over the stores `names` ('readonly' or 'readwrite'): fn(...stores) issues its
 * requests (at once or from the results of earlier ones: a transaction stays open only while it
 * has requests); the promise resolves with fn's result once the transaction has committed, so a
 * resolved write is on disk as far as the browser promises. When fn returns no promise, every
 * request is issued: the transaction is committed at once rather than at the end of the task,
 * which matters for a write made as the page is closed.
 */
export function tx(db, names, mode, fn) {
  return new Promise((resolve, reject) => {
    let t;
    try { t = db.transaction(names, mode); } catch (e) { reject(e); return; }
    let result;
    t.oncomplete = () => resolve(result);
    t.onabort = () => reject(t.error || new DOMException('transaction aborted', 'AbortError'));
    const stores = (Array.isArray(names) ? names : [names]).map((n) => t.objectStore(n));
    let p;
    try { p = fn(...stores); } catch (e) { try { t.abort(); } catch { /* finished */ } reject(e); return; }
    if (!(p && typeof p.then === 'function') && typeof t.commit === 'function') {
      try { t.commit(); } catch { /* finished already */ }
    }
    Promise.resolve(p).then((v) => { result = v; }, (e) => { try { t.abort(); } catch { /* finished */ } reject(e); });
  });
}

/**
 * Deletes database `name`. While another tab still has it open the browser waits (that tab is
 * told with a versionchange event and closes it: saved.js); this resolves once it is gone.
 */
export function deleteDb(name) {
  return new Promise((resolve, reject) => {
    let r;
    try { r = indexedDB.deleteDatabase(name); } catch (e) { reject(e); return; }
    r.onsuccess = () => resolve();
    r.onerror = () => reject(r.error);
  });
}
