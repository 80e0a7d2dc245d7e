"""Development helpers: fake Gemini server, sample media, demo."""
