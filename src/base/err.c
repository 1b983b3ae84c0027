/* err.c — mapping of iyagi error codes to the contract's codes and HTTP statuses. */
#include "err.h"

const char *iy_err_code(int err)
{
    switch (err) {
    case IY_EINVAL: case IY_EPROTO: case IY_EUTF8: return "bad_request";
    case IY_ETOOBIG: return "too_large";
    case IY_ENOTFOUND: return "not_found";
    case IY_ECONFLICT: return "conflict";
    case IY_EFORBIDDEN: return "forbidden";
    case IY_EUNAUTH: return "unauthorized";
    case IY_EUNAVAIL: return "unavailable";
    case IY_ERATE: return "rate_limited";
    default: return "internal";
    }
}

int iy_err_http_status(int err)
{
    switch (err) {
    case IY_EINVAL: case IY_EPROTO: case IY_EUTF8: case IY_ETOOBIG: return 400;
    case IY_ENOTFOUND: return 404;
    case IY_ECONFLICT: return 409;
    case IY_EFORBIDDEN: return 403;
    case IY_EUNAUTH: return 401;
    case IY_EUNAVAIL: return 503;
    case IY_ERATE: return 429;
    default: return 500;
    }
}
