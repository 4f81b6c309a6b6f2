// A token given as ?token=… must not stay in the address bar or in history.
if (new URLSearchParams(location.search).has("token")) {
  history.replaceState(null, "", location.pathname);
}
