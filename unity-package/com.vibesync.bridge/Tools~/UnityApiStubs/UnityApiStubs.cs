// Compile-check stubs: the subset of the UnityEngine / UnityEditor API that the Editor glue and
// the VibeSyncId / VibeSyncIdentityMap components use, declared with the signatures of Unity 2021.3's documentation.
// scripts/test-unity compiles Editor/ and Runtime/Components/ against these with mcs so typos and
// C# errors are caught without a Unity installation. They are NOT Unity: behaviour is not tested
// here, and a wrong belief about an API would be mirrored in these stubs. Never shipped (Tools~).
#pragma warning disable 67, 649, 169
using System;
using System.Collections.Generic;

namespace UnityEngine
{
    public class Object
    {
        public string name { get; set; }
        public HideFlags hideFlags { get; set; }
        public int GetInstanceID() { return 0; }
        public static void DestroyImmediate(Object obj, bool allowDestroyingAssets = false) { }
        public static bool operator ==(Object a, Object b) { return ReferenceEquals(a, b); }
        public static bool operator !=(Object a, Object b) { return !ReferenceEquals(a, b); }
        public static implicit operator bool(Object o) { return !ReferenceEquals(o, null); }
        public override bool Equals(object o) { return ReferenceEquals(this, o); }
        public override int GetHashCode() { return 0; }
    }
    [Flags] public enum HideFlags { None = 0, HideInHierarchy = 1, HideInInspector = 2, DontSaveInEditor = 4, NotEditable = 8, DontSaveInBuild = 16, DontUnloadUnusedAsset = 32, DontSave = 52, HideAndDontSave = 61 }
    public class Component : Object
    {
        public GameObject gameObject { get { return null; } }
        public Transform transform { get { return null; } }
        public T GetComponent<T>() { return default(T); }
    }
    public class Behaviour : Component { public bool enabled { get; set; } }
    public class MonoBehaviour : Behaviour { }
    public class Transform : Component
    {
        public Vector3 localPosition { get; set; }
        public Quaternion localRotation { get; set; }
        public Vector3 localScale { get; set; }
        public Transform parent { get; set; }
        public void SetParent(Transform p, bool worldPositionStays) { }
        public int childCount { get { return 0; } }
        public Transform GetChild(int index) { return null; }
        public bool IsChildOf(Transform parent) { return false; }
    }
    public sealed class GameObject : Object
    {
        public GameObject(string name) { }
        public Transform transform { get { return null; } }
        public SceneManagement.Scene scene { get { return default(SceneManagement.Scene); } }
        public bool activeSelf { get { return true; } }
        public void SetActive(bool v) { }
        public T GetComponent<T>() { return default(T); }
        public T AddComponent<T>() where T : Component { return default(T); }
        public T[] GetComponentsInChildren<T>(bool includeInactive) { return new T[0]; }
        public T[] GetComponents<T>() { return new T[0]; }
        public Component GetComponent(Type type) { return null; }
    }
    public struct Vector2 { public float x, y; public Vector2(float x, float y) { this.x = x; this.y = y; } }
    public struct Vector3 { public float x, y, z; public Vector3(float x, float y, float z) { this.x = x; this.y = y; this.z = z; } }
    public struct Quaternion { public float x, y, z, w; public Quaternion(float x, float y, float z, float w) { this.x = x; this.y = y; this.z = z; this.w = w; } }
    public struct Color
    {
        public float r, g, b, a;
        public Color(float r, float g, float b, float a) { this.r = r; this.g = g; this.b = b; this.a = a; }
        public Color linear { get { return this; } }
        public Color gamma { get { return this; } }
        public float maxColorComponent { get { return Math.Max(r, Math.Max(g, b)); } }
    }
    public sealed class Mesh : Object
    {
        public Rendering.IndexFormat indexFormat { get; set; }
        public bool isReadable { get { return true; } }
        public Vector3[] vertices { get; set; }
        public Vector3[] normals { get; set; }
        public Vector2[] uv { get; set; }
        public int[] triangles { get; set; }
        public void RecalculateNormals() { }
        public void RecalculateBounds() { }
    }
    public class Shader : Object { public static Shader Find(string n) { return null; } }
    public class Material : Object
    {
        public Material(Shader s) { }
        public Material(Material source) { }
        public bool HasProperty(string n) { return false; }
        public Color GetColor(string n) { return default(Color); }
        public void SetColor(string n, Color c) { }
        public float GetFloat(string n) { return 0; }
        public void SetFloat(string n, float v) { }
        public void EnableKeyword(string k) { }
        public void DisableKeyword(string k) { }
    }
    public sealed class MeshFilter : Component { public Mesh sharedMesh { get; set; } }
    public class Renderer : Component { public Material sharedMaterial { get; set; } }
    public sealed class MeshRenderer : Renderer { }
    public static class Application { public static string productName { get { return ""; } } public static string unityVersion { get { return ""; } } }
    public static class Debug { public static void Log(object m) { } public static void LogWarning(object m) { } }
    public class GUIContent { public GUIContent(string t) { } public GUIContent(string t, string tooltip) { } }
    public static class GUILayout
    {
        public static bool Button(string t, params GUILayoutOption[] o) { return false; }
        public static GUILayoutOption Width(float w) { return null; }
    }
    public class GUILayoutOption { }
    public class PropertyAttribute : Attribute { }
    [AttributeUsage(AttributeTargets.Field)] public sealed class SerializeField : Attribute { }
    [AttributeUsage(AttributeTargets.Field)] public sealed class TooltipAttribute : PropertyAttribute { public TooltipAttribute(string t) { } }
    [AttributeUsage(AttributeTargets.Class)] public sealed class DisallowMultipleComponent : Attribute { }
    [AttributeUsage(AttributeTargets.Class)] public sealed class AddComponentMenu : Attribute { public AddComponentMenu(string m) { } }
    public class ScriptableObject : Object { }
}

namespace UnityEngine.Rendering
{
    public enum IndexFormat { UInt16, UInt32 }
    public class RenderPipelineAsset : ScriptableObject { public virtual Shader defaultShader { get { return null; } } }
    public static class GraphicsSettings { public static RenderPipelineAsset currentRenderPipeline { get { return null; } } }
}

namespace UnityEngine.SceneManagement
{
    public struct Scene
    {
        public int handle { get { return 0; } }
        public bool isLoaded { get { return true; } }
        public string path { get { return ""; } }
        public bool IsValid() { return true; }
        public GameObject[] GetRootGameObjects() { return new GameObject[0]; }
        public static bool operator ==(Scene a, Scene b) { return true; }
        public static bool operator !=(Scene a, Scene b) { return false; }
        public override bool Equals(object o) { return true; }
        public override int GetHashCode() { return 0; }
    }
    public static class SceneManager
    {
        public static int sceneCount { get { return 0; } }
        public static Scene GetSceneAt(int i) { return default(Scene); }
        public static void MoveGameObjectToScene(GameObject go, Scene scene) { }
    }
}

namespace UnityEditor
{
    using UnityEngine;
    [AttributeUsage(AttributeTargets.Class)] public sealed class InitializeOnLoadAttribute : Attribute { }
    [AttributeUsage(AttributeTargets.Method)] public sealed class MenuItem : Attribute { public MenuItem(string p) { } }
    [AttributeUsage(AttributeTargets.Method)] public sealed class SettingsProviderAttribute : Attribute { }
    public enum SettingsScope { User, Project }
    public class SettingsProvider
    {
        public SettingsProvider(string path, SettingsScope scope, IEnumerable<string> keywords = null) { }
        public string label { get; set; }
        public IEnumerable<string> keywords { get; set; }
        public Action<string> guiHandler { get; set; }
    }
    public static class SettingsService { public static EditorWindow OpenProjectSettings(string p) { return null; } }
    [AttributeUsage(AttributeTargets.Class)]
    public sealed class FilePathAttribute : Attribute
    {
        public enum Location { PreferencesFolder, ProjectFolder }
        public FilePathAttribute(string relativePath, Location location) { }
    }
    public class ScriptableSingleton<T> : ScriptableObject where T : ScriptableObject
    {
        public static T instance { get { return null; } }
        protected virtual void Save(bool saveAsText) { }
    }
    public class EditorWindow : ScriptableObject
    {
        public GUIContent titleContent { get; set; }
        public static T GetWindow<T>() where T : EditorWindow { return null; }
        public void Show() { }
        public void Repaint() { }
    }
    public static class EditorApplication
    {
        public delegate void CallbackFunction();
        public static CallbackFunction update;
        public static CallbackFunction delayCall;
        public static event Action quitting;
        public static event Action<PlayModeStateChange> playModeStateChanged;
        public static bool isPlayingOrWillChangePlaymode { get { return false; } }
        public static void QueuePlayerLoopUpdate() { }
    }
    public enum PlayModeStateChange { EnteredEditMode, ExitingEditMode, EnteredPlayMode, ExitingPlayMode }
    public static class AssemblyReloadEvents
    {
        public delegate void AssemblyReloadCallback();
        public static event AssemblyReloadCallback beforeAssemblyReload;
        public static event AssemblyReloadCallback afterAssemblyReload;
    }
    public static class SessionState
    {
        public static bool GetBool(string k, bool d) { return d; }
        public static void SetBool(string k, bool v) { }
        public static string GetString(string k, string d) { return d; }
        public static void SetString(string k, string v) { }
        public static void EraseString(string k) { }
    }
    public static class PrefabUtility
    {
        public static bool IsPartOfPrefabInstance(Object componentOrGameObject) { return false; }
        public static bool IsAddedComponentOverride(Object component) { return false; }
    }
    public static class EditorUtility
    {
        public static Object InstanceIDToObject(int id) { return null; }
        public static void SetDirty(Object o) { }
        public static string OpenFilePanel(string title, string dir, string ext) { return ""; }
    }
    public static class AssetDatabase
    {
        public static bool Contains(Object o) { return false; }
        public static string GetAssetPath(Object o) { return ""; }
    }
    public static class EditorJsonUtility
    {
        public static string ToJson(object obj) { return "{}"; }
        public static void FromJsonOverwrite(string json, object objectToOverwrite) { }
    }
    public static class Undo
    {
        public static void IncrementCurrentGroup() { }
        public static int GetCurrentGroup() { return 0; }
        public static void SetCurrentGroupName(string n) { }
        public static void RecordObject(Object o, string n) { }
        public static void RegisterCreatedObjectUndo(Object o, string n) { }
        public static void DestroyObjectImmediate(Object o) { }
        public static void SetTransformParent(Transform t, Transform p, string n) { }
        public static T AddComponent<T>(GameObject go) where T : Component { return default(T); }
        public static Component AddComponent(GameObject gameObject, Type type) { return null; }
        public static void CollapseUndoOperations(int g) { }
        public static void RevertAllDownToGroup(int g) { }
    }
    public class SceneView : EditorWindow { public static void RepaintAll() { } }
    public enum MessageType { None, Info, Warning, Error }
    public static class EditorStyles { public static GUIStyle boldLabel { get { return null; } } }
    public class GUIStyle { }
    public static class EditorGUI
    {
        public static void BeginChangeCheck() { }
        public static bool EndChangeCheck() { return false; }
        public class DisabledScope : IDisposable { public DisabledScope(bool d) { } public void Dispose() { } }
    }
    public static class EditorGUILayout
    {
        public static bool Toggle(GUIContent l, bool v) { return v; }
        public static string TextField(string l, string v) { return v; }
        public static string TextField(GUIContent l, string v) { return v; }
        public static int IntField(string l, int v) { return v; }
        public static int IntSlider(GUIContent l, int v, int a, int b) { return v; }
        public static void Space() { }
        public static void HelpBox(string m, MessageType t) { }
        public static void LabelField(string l, params GUILayoutOption[] o) { }
        public static void LabelField(string l, GUIStyle s, params GUILayoutOption[] o) { }
        public static void LabelField(string l, string v) { }
        public static void LabelField(string l, string v, GUIStyle s) { }
        public class HorizontalScope : IDisposable { public HorizontalScope() { } public void Dispose() { } }
    }
    public enum ObjectChangeKind
    {
        None = 0, ChangeScene = 1, CreateGameObjectHierarchy = 2, ChangeGameObjectStructureHierarchy = 3, ChangeGameObjectStructure = 4,
        ChangeGameObjectParent = 5, ChangeGameObjectOrComponentProperties = 6, DestroyGameObjectHierarchy = 7, CreateAssetObject = 8,
        DestroyAssetObject = 9, ChangeAssetObjectProperties = 10, UpdatePrefabInstances = 11,
    }
    public struct CreateGameObjectHierarchyEventArgs { public int instanceId { get { return 0; } } }
    public struct ChangeGameObjectOrComponentPropertiesEventArgs { public int instanceId { get { return 0; } } }
    public struct ChangeGameObjectStructureEventArgs { public int instanceId { get { return 0; } } }
    public struct ChangeGameObjectStructureHierarchyEventArgs { public int instanceId { get { return 0; } } }
    public struct ChangeGameObjectParentEventArgs { public int instanceId { get { return 0; } } }
    public struct ChangeAssetObjectPropertiesEventArgs { public int instanceId { get { return 0; } } }
    public struct ObjectChangeEventStream
    {
        public int length { get { return 0; } }
        public ObjectChangeKind GetEventType(int i) { return ObjectChangeKind.None; }
        public void GetCreateGameObjectHierarchyEvent(int i, out CreateGameObjectHierarchyEventArgs e) { e = default(CreateGameObjectHierarchyEventArgs); }
        public void GetChangeGameObjectOrComponentPropertiesEvent(int i, out ChangeGameObjectOrComponentPropertiesEventArgs e) { e = default(ChangeGameObjectOrComponentPropertiesEventArgs); }
        public void GetChangeGameObjectStructureEvent(int i, out ChangeGameObjectStructureEventArgs e) { e = default(ChangeGameObjectStructureEventArgs); }
        public void GetChangeGameObjectStructureHierarchyEvent(int i, out ChangeGameObjectStructureHierarchyEventArgs e) { e = default(ChangeGameObjectStructureHierarchyEventArgs); }
        public void GetChangeGameObjectParentEvent(int i, out ChangeGameObjectParentEventArgs e) { e = default(ChangeGameObjectParentEventArgs); }
        public void GetChangeAssetObjectPropertiesEvent(int i, out ChangeAssetObjectPropertiesEventArgs e) { e = default(ChangeAssetObjectPropertiesEventArgs); }
    }
    public static class ObjectChangeEvents
    {
        public delegate void ObjectChangeEventsHandler(ref ObjectChangeEventStream stream);
        public static event ObjectChangeEventsHandler changesPublished;
    }
}

namespace UnityEditor.SceneManagement
{
    using UnityEngine.SceneManagement;
    public enum OpenSceneMode { Single, Additive, AdditiveWithoutLoading }
    public static class EditorSceneManager
    {
        public delegate void SceneOpenedCallback(Scene scene, OpenSceneMode mode);
        public delegate void SceneClosingCallback(Scene scene, bool removingScene);
        public delegate void SceneSavingCallback(Scene scene, string path);
        public static event SceneOpenedCallback sceneOpened;
        public static event SceneClosingCallback sceneClosing;
        public static event SceneSavingCallback sceneSaving;
        public static bool MarkSceneDirty(Scene s) { return true; }
    }
}

namespace UnityEditor.Build.Reporting
{
    public sealed class BuildReport { }
}

namespace UnityEditor.Build
{
    public interface IOrderedCallback { int callbackOrder { get; } }
    public interface IProcessSceneWithReport : IOrderedCallback
    {
        void OnProcessScene(UnityEngine.SceneManagement.Scene scene, UnityEditor.Build.Reporting.BuildReport report);
    }
}
