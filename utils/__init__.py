"""Pure helpers with no app imports."""
