/* tcpota.c - error names, and why a server has no update. */
#include "tcpota/tcpota.h"

#include "tcpota/codec.h"

const char *tcpota_strerror(int err)
{
#ifdef TCPOTA_SMALL
    /* Small builds keep no message table: the code itself is the message. */
    (void)err;
    return "tcpota error (see the numeric code)";
#else
    if (err > 0) {
        err = -err;
    }
    switch (err) {
    case TCPOTA_OK: return "ok";
    case TCPOTA_ERR_NOENT: return "no such record";
    case TCPOTA_ERR_IO: return "storage or transport failure";
    case TCPOTA_ERR_AGAIN: return "try again";
    case TCPOTA_ERR_DENIED: return "not allowed";
    case TCPOTA_ERR_BUSY: return "busy, retry later";
    case TCPOTA_ERR_INVAL: return "invalid argument";
    case TCPOTA_ERR_NOSPC: return "no space";
    case TCPOTA_ERR_RANGE: return "offset or size out of range";
    case TCPOTA_ERR_PROTO: return "protocol violation";
    case TCPOTA_ERR_STATE: return "message not valid in this state";
    case TCPOTA_ERR_CRC: return "frame CRC mismatch";
    case TCPOTA_ERR_INTEGRITY: return "image SHA-256 mismatch";
    case TCPOTA_ERR_TOOBIG: return "frame too big";
    case TCPOTA_ERR_VERSION: return "no common protocol version";
    case TCPOTA_ERR_NOTSUP: return "not supported";
    case TCPOTA_ERR_TIMEDOUT: return "timed out";
    case TCPOTA_ERR_REFUSED: return "refused";
    case TCPOTA_ERR_CANCELED: return "canceled";
    case TCPOTA_ERR_MODEL: return "image is for another hardware model";
    case TCPOTA_ERR_UNSIGNED: return "image is not signed";
    case TCPOTA_ERR_DOWNGRADE: return "security counter lower than the device's";
    case TCPOTA_ERR_NOKEY: return "signed by an untrusted key";
    case TCPOTA_ERR_BADSIG: return "signature does not verify";
    case TCPOTA_ERR_FAILED_BEFORE: return "the image failed on this device before";
    default: return "unknown error";
    }
#endif
}

const char *tcpota_why_str(unsigned why)
{
#ifdef TCPOTA_SMALL
    (void)why;
    return "no update (see the numeric reason)";
#else
    switch (why) {
    case TCPOTA_WHY_RUNS: return "it runs the server's image";
    case TCPOTA_WHY_NOT_NEWER: return "the server's image is not newer than the one it runs";
    case TCPOTA_WHY_HELD: return "it reported the server's image as failed (rolled back, rejected "
                                 "or declined), so the server holds it back";
    case TCPOTA_WHY_OTHER_MODEL: return "the server's image is for another hardware model";
    case TCPOTA_WHY_NONE: return "the server has nothing for its model (no image, or no rollout)";
    case TCPOTA_WHY_LATER: return "an update applies, but not yet (a rollout's wave not open, paused or halted)";
    case TCPOTA_WHY_UNKNOWN_NOW: return "the server cannot tell now whether one applies (its database does not answer)";
    case TCPOTA_WHY_UNSERVABLE: return "an update applies, but the server cannot serve its image now (its file is missing or damaged there, or it is not signed as that server requires: its log says which)";
    case TCPOTA_WHY_UNORDERED: return "the server cannot order its image's version against the one this device runs (semantic versions like 2.1.0 have an order)";
    default: return "the server gave no reason";
    }
#endif
}
