//! End-to-end tests of rcron live in `tests/`: a real master and a real
//! worker (in-process, through their public `run` functions) against the
//! etcd and MongoDB-wire server that `deploy/test-env.sh` starts, driven
//! only through the HTTP API as a user would.
