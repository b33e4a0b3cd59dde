/* flock.node: flock(2) for src/store/lock.ts, in process (Node has no flock). Without it the lock runs util-linux
 * `flock` as a child per take, a fork and an exec on the boot's critical path.
 *
 * tryLock(fd): flock(fd, LOCK_EX | LOCK_NB). Returns true when the lock is ours, false when another open file
 * description holds it (EWOULDBLOCK); throws on any other error. It never blocks: a wait is retried from
 * JavaScript, so the event loop keeps running. Built by scripts/build-helpers.mjs as an N-API addon. */
#include <errno.h>
#include <string.h>
#include <sys/file.h>
#include <node_api.h>

static napi_value try_lock(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "tryLock(fd): fd must be a number");
    return NULL;
  }
  int rc;
  do {
    rc = flock(fd, LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0 && errno != EWOULDBLOCK) {
    napi_throw_error(env, NULL, strerror(errno));
    return NULL;
  }
  napi_value result;
  napi_get_boolean(env, rc == 0, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "tryLock", NAPI_AUTO_LENGTH, try_lock, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "tryLock", fn) != napi_ok) return NULL;
  return exports;
}
