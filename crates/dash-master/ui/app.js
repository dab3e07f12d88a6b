// The Dash portal (filled in next).
