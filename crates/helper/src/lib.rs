//! `glrunner helper`: the subcommands job scripts call for artifacts and caches.
