// Error codes exactly as spelled on the wire (PROTOCOL.md §4).
namespace VibeSync.Bridge.Core
{
    public static class ErrorCode
    {
        // Frame / connection level
        public const string FrameTooLarge = "FRAME_TOO_LARGE";
        public const string BadFrame = "BAD_FRAME";
        public const string BadMessage = "BAD_MESSAGE";
        public const string UnknownType = "UNKNOWN_TYPE";
        public const string AuthFailed = "AUTH_FAILED";
        public const string ProtocolMismatch = "PROTOCOL_MISMATCH";
        public const string BadProjectId = "BAD_PROJECT_ID";
        public const string HandshakeTimeout = "HANDSHAKE_TIMEOUT";
        public const string NotAuthenticated = "NOT_AUTHENTICATED";
        public const string RateLimited = "RATE_LIMITED";
        public const string SafeMode = "SAFE_MODE";
        public const string StorageFailed = "STORAGE_FAILED";
        public const string ShuttingDown = "SHUTTING_DOWN";
        public const string SlowConsumer = "SLOW_CONSUMER"; // closes: reconnect, the replay brings the latest state
        public const string TooManyConnections = "TOO_MANY_CONNECTIONS"; // closes: retry after a moment
        public const string SyncRestarted = "SYNC_RESTARTED"; // closes: reconnect, re-send what has no batch_result (§6.6)
        public const string Internal = "INTERNAL";

        // Per item (ack.results[].error_code)
        public const string InvalidUuid = "INVALID_UUID";
        public const string UnknownKind = "UNKNOWN_KIND";
        public const string InvalidName = "INVALID_NAME";
        public const string InvalidField = "INVALID_FIELD";
        public const string NonFinite = "NON_FINITE";
        public const string TooLarge = "TOO_LARGE";
        public const string Quarantined = "QUARANTINED";
        public const string NotFound = "NOT_FOUND";
        public const string DuplicateInRequest = "DUPLICATE_IN_REQUEST";
        public const string Stale = "STALE";
        public const string Blocked = "BLOCKED"; // the governance gate refused it (§6.7)

        // WAL only
        public const string RecoveredIncomplete = "RECOVERED_INCOMPLETE";
        public const string VerifyMismatch = "VERIFY_MISMATCH";
        public const string VerifyTimeout = "VERIFY_TIMEOUT";
        public const string ParticipantLost = "PARTICIPANT_LOST"; // a participant left mid-apply (§6.4)
        public const string ParticipantLeft = "PARTICIPANT_LEFT"; // the same, after saying it was `closing` (§6.8)

        /// <summary>Per-item codes (ack.results[].error_code), PROTOCOL §5, §6.1.</summary>
        public static readonly string[] ItemCodes =
        {
            InvalidUuid, UnknownKind, InvalidName, InvalidField, NonFinite, TooLarge, Quarantined, NotFound,
            DuplicateInRequest, Stale, Blocked, StorageFailed,
        };

        /// <summary>batch_result.error_code of a rollback, and the WAL's ROLLBACK codes.</summary>
        public static readonly string[] RollbackCodes = { VerifyMismatch, VerifyTimeout, RecoveredIncomplete, ParticipantLost, ParticipantLeft };

        public static readonly string[] All =
        {
            FrameTooLarge, BadFrame, BadMessage, UnknownType, AuthFailed, ProtocolMismatch, BadProjectId,
            HandshakeTimeout, NotAuthenticated, RateLimited, SafeMode, StorageFailed, ShuttingDown, Internal,
            InvalidUuid, UnknownKind, InvalidName, InvalidField, NonFinite, TooLarge, Quarantined, NotFound,
            DuplicateInRequest, Stale, Blocked, RecoveredIncomplete, VerifyMismatch, VerifyTimeout, ParticipantLost, ParticipantLeft, SlowConsumer,
            TooManyConnections, SyncRestarted,
        };

        /// <summary>Codes after which the daemon closes the connection (PROTOCOL §4 table).</summary>
        public static bool ClosesConnection(string code)
        {
            switch (code)
            {
                case FrameTooLarge: case BadFrame: case AuthFailed: case ProtocolMismatch: case BadProjectId:
                case HandshakeTimeout: case NotAuthenticated: case ShuttingDown: case SlowConsumer: case TooManyConnections: case SyncRestarted:
                    return true;
                default:
                    return false;
            }
        }

        /// <summary>Handshake refusals that retrying with the same settings cannot fix.</summary>
        public static bool IsConfigurationError(string code)
        {
            return code == AuthFailed || code == ProtocolMismatch || code == BadProjectId;
        }
    }
}
