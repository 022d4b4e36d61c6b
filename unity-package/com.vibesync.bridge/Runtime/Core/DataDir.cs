// Where the daemon keeps its data (and the token): env VIBESYNC_DATA_DIR, else per OS:
// Linux $XDG_DATA_HOME/vibesync or ~/.local/share/vibesync, macOS ~/Library/Application Support/vibesync,
// Windows %APPDATA%\vibesync.
using System;
using System.IO;

namespace VibeSync.Bridge.Core
{
    public static class DataDir
    {
        public const string EnvVar = "VIBESYNC_DATA_DIR";
        public const string TokenFileName = "token";

        public static string Resolve()
        {
            string env = Environment.GetEnvironmentVariable(EnvVar);
            if (!string.IsNullOrEmpty(env)) return env;
            string home = Environment.GetEnvironmentVariable("HOME");
            if (string.IsNullOrEmpty(home)) home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            switch (Environment.OSVersion.Platform)
            {
                case PlatformID.Win32NT:
                case PlatformID.Win32Windows:
                case PlatformID.Win32S:
                case PlatformID.WinCE:
                    {
                        string appData = Environment.GetEnvironmentVariable("APPDATA");
                        if (string.IsNullOrEmpty(appData)) appData = Environment.GetFolderPath(Environment.SpecialFolder.ApplicationData);
                        return Path.Combine(appData, "vibesync");
                    }
                case PlatformID.MacOSX:
                    return Path.Combine(Path.Combine(Path.Combine(home, "Library"), "Application Support"), "vibesync");
            }
            // Mono reports macOS as Unix; tell them apart by the Library folder layout.
            if (Directory.Exists("/System/Library/CoreServices") && !string.IsNullOrEmpty(home))
                return Path.Combine(Path.Combine(Path.Combine(home, "Library"), "Application Support"), "vibesync");
            string xdg = Environment.GetEnvironmentVariable("XDG_DATA_HOME");
            if (!string.IsNullOrEmpty(xdg)) return Path.Combine(xdg, "vibesync");
            return Path.Combine(Path.Combine(Path.Combine(home ?? ".", ".local"), "share"), "vibesync");
        }

        public static string DefaultTokenFile() { return Path.Combine(Resolve(), TokenFileName); }

        /// <summary>Reads and trims the token. Throws IOException with a message that says what to do.</summary>
        public static string ReadToken(string tokenFile)
        {
            if (string.IsNullOrEmpty(tokenFile)) tokenFile = DefaultTokenFile();
            string text;
            try { text = File.ReadAllText(tokenFile); }
            catch (FileNotFoundException)
            {
                throw new IOException("token file " + tokenFile + " does not exist: start the daemon (`vibesync serve`) or set the token file in Project Settings > VibeSync");
            }
            catch (DirectoryNotFoundException)
            {
                throw new IOException("token file " + tokenFile + " does not exist (its folder is missing): start the daemon (`vibesync serve`) or set the token file in Project Settings > VibeSync");
            }
            catch (UnauthorizedAccessException)
            {
                throw new IOException("token file " + tokenFile + " is not readable by this user: run the editor as the user that runs the daemon");
            }
            string token = text.Trim();
            if (token.Length == 0) throw new IOException("token file " + tokenFile + " is empty: restart the daemon so it writes a new token");
            return token;
        }
    }
}
