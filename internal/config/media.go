package config

// Media configures the content repository.
type Media struct{}

func (m *Media) validate() error { return nil }

func defaultMedia() Media { return Media{} }
