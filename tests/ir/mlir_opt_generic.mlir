// RUN: parse-print %s | filecheck %s

// The text of roundtrip.mlir after `mlir-opt --allow-unregistered-dialect
// --mlir-print-op-generic` (MLIR 22): the module and functions as generic ops
// ("builtin.module", "func.func" with function_type/res_attrs/sym_name
// properties and a ^bb0 block of arguments, "func.return").  It reads back to
// the same IR, the arguments named as MLIR numbers them (the inplace pair is
// written by position, as dlc prints it: a name would not survive %argN).

// CHECK:       module attributes {dl.model = {name = "mlp", optimizer = {learning_rate = 0.001, name = "rmsprop"}}} {
// CHECK-NEXT:    func.func @predict(%arg5: tensor<784x10xf32> {dl.name = "arg5"}, %arg6: tensor<10xf32> {dl.name = "arg6"}, %arg7: tensor<?x784xf32, "N"> {dl.name = "arg7"}) -> (tensor<?x10xf32, "N"> {dl.name = "probs"}) {
// CHECK-NEXT:      %0 = "dl.matmul"(%arg7, %arg5)
// CHECK:           %2 = "dl.softmax"(%1) {axis = -1}
// CHECK-NEXT:      func.return %2 : tensor<?x10xf32, "N">
// CHECK:         func.func @loss({{.*}}) -> (tensor<f32> {dl.name = "loss"}, tensor<?xi64, "N">) {
// CHECK:           %2 = "dl.constant"() {dtype = f32, shape = [], value = dense<0.5> : tensor<f64>}
// CHECK:         func.func @train_step(%arg0: tensor<4x2xf32>, %arg1: tensor<4x2xf32>) -> (tensor<4x2xf32> {dl.name = "w"}) attributes {inplace = [[0, 0]]} {
// CHECK:         func.func @nothing() -> () {
// CHECK-NEXT:      func.return

"builtin.module"() ({
  "func.func"() <{function_type = (tensor<784x10xf32>, tensor<10xf32>, tensor<?x784xf32, "N">) -> tensor<?x10xf32, "N">, res_attrs = [{dl.name = "probs"}], sym_name = "predict"}> ({
  ^bb0(%arg5: tensor<784x10xf32>, %arg6: tensor<10xf32>, %arg7: tensor<?x784xf32, "N">):
    %8 = "dl.matmul"(%arg7, %arg5) : (tensor<?x784xf32, "N">, tensor<784x10xf32>) -> tensor<?x10xf32, "N">
    %9 = "dl.add"(%8, %arg6) : (tensor<?x10xf32, "N">, tensor<10xf32>) -> tensor<?x10xf32, "N">
    %10 = "dl.softmax"(%9) : (tensor<?x10xf32, "N">) -> tensor<?x10xf32, "N">
    "func.return"(%10) : (tensor<?x10xf32, "N">) -> ()
  }) : () -> ()
  "func.func"() <{function_type = (tensor<784x10xf32>, tensor<?x784xf32, "N">, tensor<?xi64, "N">) -> (tensor<f32>, tensor<?xi64, "N">), res_attrs = [{dl.name = "loss"}, {}], sym_name = "loss"}> ({
  ^bb0(%arg2: tensor<784x10xf32>, %arg3: tensor<?x784xf32, "N">, %arg4: tensor<?xi64, "N">):
    %1 = "dl.matmul"(%arg3, %arg2) : (tensor<?x784xf32, "N">, tensor<784x10xf32>) -> tensor<?x10xf32, "N">
    %2 = "dl.sparse_categorical_crossentropy"(%1, %arg4) {from_logits = true} : (tensor<?x10xf32, "N">, tensor<?xi64, "N">) -> tensor<f32>
    %3 = "dl.constant"() {dtype = f32, value = 5.000000e-01 : f64} : () -> tensor<f32>
    %4 = "dl.mul"(%2, %3) : (tensor<f32>, tensor<f32>) -> tensor<f32>
    %5 = "dl.constant"() {dtype = f32, shape = [2, 2], value = dense<[[1.000000e+00, -0.000000e+00], [1.000000e-07, 1.000000e-01]]> : tensor<2x2xf32>} : () -> tensor<2x2xf32>
    %6 = "dl.argmax"(%1) {axis = 1 : i64} : (tensor<?x10xf32, "N">) -> tensor<?xi64, "N">
    %7 = "dl.sum"(%5) : (tensor<2x2xf32>) -> tensor<f32>
    "func.return"(%4, %6) : (tensor<f32>, tensor<?xi64, "N">) -> ()
  }) : () -> ()
  "func.func"() <{function_type = (tensor<4x2xf32>, tensor<4x2xf32>) -> tensor<4x2xf32>, res_attrs = [{dl.name = "w"}], sym_name = "train_step"}> ({
  ^bb0(%arg0: tensor<4x2xf32>, %arg1: tensor<4x2xf32>):
    %0 = "dl.sub"(%arg0, %arg1) : (tensor<4x2xf32>, tensor<4x2xf32>) -> tensor<4x2xf32>
    "func.return"(%0) : (tensor<4x2xf32>) -> ()
  }) {inplace = [[0, 0]]} : () -> ()
  "func.func"() <{function_type = () -> (), sym_name = "nothing"}> ({
    "func.return"() : () -> ()
  }) : () -> ()
}) {dl.model = {name = "mlp", optimizer = {learning_rate = 1.000000e-03 : f64, name = "rmsprop"}}} : () -> ()

