package app

import "github.com/gatewayd/gatewayd/internal/config"

// ReloadHomeAssistant lets the tests apply a reloaded config to the
// announcer, as the reload does.
func (a *App) ReloadHomeAssistant(cfg *config.Config) bool { return a.reloadHomeAssistant(cfg, "test") }
