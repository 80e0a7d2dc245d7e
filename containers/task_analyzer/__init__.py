"""Task analyzer: a candidate's screen recording → structured report (Gemini MAP/REDUCE)."""
