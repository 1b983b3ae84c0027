/* err.h — the one error convention of iyagi.
 *
 * Every function that can fail returns 0 on success or one of these negative
 * codes. If a function that takes a callback fails, the callback is never
 * called. iy_err_name() maps a code to the contract's error code string. */
#ifndef IY_ERR_H
#define IY_ERR_H

enum iy_err {
    IY_OK = 0,
    IY_EINVAL = -1,     /* bad input: "bad_request" */
    IY_ENOMEM = -2,     /* allocation failed in a try_ path */
    IY_ETOOBIG = -3,    /* over a size limit: "too_large" */
    IY_EPROTO = -4,     /* protocol violation (framing) */
    IY_EUTF8 = -5,      /* invalid UTF-8 */
    IY_ENOTFOUND = -6,  /* "not_found" */
    IY_ECONFLICT = -7,  /* "conflict" */
    IY_EFORBIDDEN = -8, /* "forbidden" */
    IY_EUNAUTH = -9,    /* "unauthorized" */
    IY_EIO = -10,       /* storage or system failure: "internal" */
    IY_EEXIST = -11,    /* idempotent duplicate: the original result is returned */
    IY_EUNAVAIL = -12,  /* shutting down or overloaded: "unavailable" */
    IY_ERATE = -13,     /* "rate_limited" */
};

/* The contract's code for err ("bad_request", "too_large", ...). Never NULL. */
const char *iy_err_code(int err);

/* The HTTP status that goes with err (400, 413 -> 400 per contract, ...). */
int iy_err_http_status(int err);

#endif
