// The operator's theme (saved, else the system's), set while <head> is
// read: the admin's module scripts run only after the first paint, which
// drew a dark-mode operator's page light for a moment.
(function () {
  let theme = null;
  try {
    theme = localStorage.getItem('rcron-theme');
  } catch (_) {
    // Storage refused (a privacy setting): the system's theme.
  }
  if (theme !== 'dark' && theme !== 'light') {
    theme = matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  }
  document.documentElement.dataset.bsTheme = theme;
}());
